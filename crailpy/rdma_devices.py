"""RDMA devices and their ports, read through pyverbs, for `crailpy rdma info`.

pyverbs comes with rdma-core (Debian: python3-pyverbs); the data path does not
need it, only these diagnostics do.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from crailpy.errors import CrailError

PORT_STATES = {0: "NOP", 1: "DOWN", 2: "INIT", 3: "ARMED", 4: "ACTIVE", 5: "ACTIVE_DEFER"}
MTUS = {1: 256, 2: 512, 3: 1024, 4: 2048, 5: 4096}
MAX_GIDS = 16  # shown per port


class Port(NamedTuple):
    number: int
    state: str
    active_mtu: int
    max_mtu: int
    link_layer: str
    gids: list[tuple[int, str]]  # (index, gid)


class Device(NamedTuple):
    name: str
    node_guid: str
    ports: list[Port]


def devices() -> list[Device]:
    """Every RDMA device this machine has; [] when it has none."""
    try:
        import pyverbs.device as verbs_device
        from pyverbs.pyverbs_error import PyverbsError
    except ImportError:
        raise CrailError("pyverbs is not installed (Debian: apt-get install python3-pyverbs)") \
            from None
    try:
        found = verbs_device.get_device_list()
    except PyverbsError:
        return []  # no RDMA subsystem at all
    result = []
    for entry in found:
        name = entry.name.decode()
        with verbs_device.Context(name=name) as ctx:
            attr = ctx.query_device()
            ports = [_port(ctx, number) for number in range(1, attr.phys_port_cnt + 1)]
        result.append(Device(name, _guid(attr.node_guid), ports))
    return result


def _port(ctx, number: int) -> Port:
    attr = ctx.query_port(number)
    gids = []
    for index in range(min(attr.gid_tbl_len, MAX_GIDS)):
        try:
            gid = str(ctx.query_gid(number, index))
        except Exception:  # an empty slot of the table
            continue
        if gid.strip(":0"):
            gids.append((index, _gid(gid)))
    layer = {1: "InfiniBand", 2: "Ethernet"}.get(attr.link_layer, str(attr.link_layer))
    return Port(number, PORT_STATES.get(attr.state, str(attr.state)), MTUS.get(attr.active_mtu, 0),
                MTUS.get(attr.max_mtu, 0), layer, gids)


def _guid(value: int | str) -> str:
    """As ibv_devinfo writes it. pyverbs gives the big-endian GUID read as a host integer."""
    if isinstance(value, str):
        return value
    raw = value.to_bytes(8, "little").hex()
    return ":".join(raw[i : i + 4] for i in range(0, 16, 4))


def _gid(text: str) -> str:
    """An IPv6 GID written short; a RoCE v2 GID of an IPv4 address as ::ffff:a.b.c.d."""
    address = ipaddress.IPv6Address(text)
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped else address.compressed
