"""Configuration: built-in defaults, then the TOML file named by CRAILPY_CONF, then flags.

conf/crailpy.toml documents every key with its default; a unit test keeps that
file and the classes below in step. They are named tuples (immutable; `override`
makes changed copies), which also keeps a client's start-up short.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

from crailpy.errors import InvalidArgument

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
          "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def parse_size(value: int | str) -> int:
    """4096, '64KiB', '1 MiB', '2g' -> bytes (binary units)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", value)
    if not match or match.group(2).lower() not in _UNITS:
        raise InvalidArgument(f"not a size: {value!r} (try 4096, 64KiB or 1GiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


class NamenodeConfig(NamedTuple):
    address: str = "127.0.0.1:9060"
    block_size: int = 4 << 20
    storage_classes: tuple[str, ...] = ("dram", "flash")
    heartbeat_interval: float = 1.0
    dead_after: float = 5.0
    spin_us: int = 50
    spin_max_us: int = 1000
    inline_max: int = 4 << 10
    inline_capacity: int = 128 << 20


class DatanodeConfig(NamedTuple):
    tier: str = "dram"
    address: str = "127.0.0.1:0"
    capacity: int = 256 << 20
    prefault: bool = True
    location_class: int = 0
    path: str = ""
    nvmf_backend: str = "builtin"
    nvmf_port: int = 0
    nvmf_nqn: str = ""
    spdk_socket: str = "/var/tmp/spdk.sock"
    spin_us: int = 50
    send_buffer: int = 256 << 10
    rdma: str = "auto"
    rdma_port: int = 0
    key_region: int = 0


class ClientConfig(NamedTuple):
    alloc_ahead: int = 8
    inflight: int = 16
    lookup_blocks: int = 64
    buffer_size: int = 64 << 10
    connect_timeout: float = 3.0
    io_timeout: float = 30.0
    spin_us: int = 100
    send_buffer: int = 256 << 10
    transport: str = "auto"
    inline_max: int = 4 << 10


class ClusterConfig(NamedTuple):
    state_dir: str = "~/.crailpy/cluster"
    dram_datanodes: int = 2
    flash_datanodes: int = 1
    flash_tier: str = "nvmf"
    dram_capacity: int = 256 << 20
    flash_capacity: int = 1 << 30
    datanode_port: int = 0


class Config(NamedTuple):
    namenode: NamenodeConfig = NamenodeConfig()
    datanode: DatanodeConfig = DatanodeConfig()
    client: ClientConfig = ClientConfig()
    cluster: ClusterConfig = ClusterConfig()

    def override(self, section: str, **values: Any) -> "Config":
        """A copy with the given keys of `section` replaced; None values are ignored."""
        current = getattr(self, section)
        changed = {k: _coerce(current, k, v) for k, v in values.items() if v is not None}
        return self._replace(**{section: current._replace(**changed)})


def _coerce(section: Any, key: str, value: Any) -> Any:
    if key not in section._fields:
        raise TypeError(f"unknown key {key!r}")
    default = getattr(section, key)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{key} must be a list of names, not {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{key} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        return parse_size(value) if isinstance(value, str) else int(value)
    if isinstance(default, float):
        return float(value)
    return value


def load(path: str | os.PathLike | None = None) -> Config:
    """Defaults, overridden by the file at `path` or else by the one CRAILPY_CONF names."""
    config = Config()
    path = path or os.environ.get("CRAILPY_CONF")
    if not path:
        return config
    import tomllib  # only when there is a file: a client without one starts faster
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise InvalidArgument(f"cannot read configuration {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"configuration {path} is not valid TOML: {exc}") from None
    for section, values in data.items():
        if section not in config._fields or not isinstance(values, dict):
            raise InvalidArgument(f"configuration {path}: unknown section [{section}]")
        known = set(getattr(config, section)._fields)
        unknown = set(values) - known
        if unknown:
            raise InvalidArgument(f"configuration {path}: unknown key(s) in [{section}]: "
                                  f"{', '.join(sorted(unknown))}")
        try:
            config = config.override(section, **values)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"configuration {path} [{section}]: {exc}") from None
    return config


def state_dir(config: Config) -> "Path":
    from pathlib import Path

    return Path(os.path.expanduser(config.cluster.state_dir))
