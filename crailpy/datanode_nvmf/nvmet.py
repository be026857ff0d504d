"""The Linux kernel's NVMe over TCP: its target (nvmet, through configfs) and its initiator.

`Export` makes a subsystem with one namespace backed by a file or block device
and links it to a TCP port; `remove()` takes down exactly what it made. The
flash datanode's `nvmet` back end and the tests use it. `KernelInitiator`
connects the kernel's own initiator to a target and finds the block device it
makes: the tests and the benchmark compare crailpy against it. Both need root
and the kernel's modules (loaded here if missing).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from crailpy.errors import CrailError

CONFIGFS = Path("/sys/kernel/config")
NVMET = CONFIGFS / "nvmet"
FABRICS = Path("/dev/nvme-fabrics")
OURS = range(0xCA00, 0xCB00)  # ids of the nvmet ports crailpy makes, and may remove
# Writes up to this size travel in the command capsule on ports crailpy makes (nvmet's
# default is 16 KiB): a 128 KiB command, an initiator's largest against nvmet, then takes
# one round trip instead of a capsule, an R2T and the data. Both initiators use it.
IN_CAPSULE = 128 << 10


def load_modules(*names: str) -> None:
    """Ask for kernel modules; where they or modprobe are missing, the caller's check of
    what they provide says so."""
    try:
        subprocess.run(["modprobe", "-q", *names], capture_output=True)
    except FileNotFoundError:
        pass


def available() -> str | None:
    """Why the kernel target cannot be used here, or None."""
    if not NVMET.exists():
        load_modules("nvmet", "nvmet_tcp")
        if not CONFIGFS.is_mount():
            subprocess.run(["mount", "-t", "configfs", "none", str(CONFIGFS)], capture_output=True)
    return None if NVMET.exists() else "no kernel NVMe target (nvmet; needs root)"


class Export:
    def __init__(self, nqn: str, path: str, host: str, port: int, buffered: bool = True) -> None:
        """Export `path` as namespace 1 of subsystem `nqn` on tcp host:port. `buffered`: through
        the page cache (nvmet opens files with O_DIRECT otherwise, which tmpfs refuses). A
        port already listening there is shared; one made here is removed with the rest."""
        reason = available()
        if reason:
            raise CrailError(reason)
        self._undo = contextlib.ExitStack()  # what was made, to remove in reverse
        with self._undo:
            subsystem = NVMET / "subsystems" / nqn
            subsystem.mkdir()
            self._undo.callback(subsystem.rmdir)
            (subsystem / "attr_allow_any_host").write_text("1")
            namespace = subsystem / "namespaces" / "1"
            namespace.mkdir()
            self._undo.callback(namespace.rmdir)
            (namespace / "device_path").write_text(path)
            (namespace / "buffered_io").write_text("1" if buffered else "0")
            (namespace / "enable").write_text("1")
            self._undo.callback((namespace / "enable").write_text, "0")
            listener = self._port(host, port)
            link = listener / "subsystems" / nqn
            link.symlink_to(subsystem)
            self._undo.callback(link.unlink)
            self._undo = self._undo.pop_all()

    def _port(self, host: str, port: int) -> Path:
        """The nvmet port listening on tcp host:port, made if none is. A port that crailpy
        made (its id in `OURS`) is removed by whichever export leaves it unused last."""
        wanted = {"addr_trtype": "tcp", "addr_adrfam": "ipv4", "addr_traddr": host,
                  "addr_trsvcid": str(port)}
        ports = {int(p.name): p for p in (NVMET / "ports").iterdir()}
        listener = next((p for p in ports.values()
                         if all((p / k).read_text().strip() == v for k, v in wanted.items())), None)
        if listener is None:
            listener = NVMET / "ports" / str(next(i for i in OURS if i not in ports))
            listener.mkdir()
            for name, value in {**wanted, "param_inline_data_size": str(IN_CAPSULE)}.items():
                (listener / name).write_text(value)
        if int(listener.name) in OURS:
            self._undo.callback(_remove_unused, listener)
        return listener

    def remove(self) -> None:
        self._undo.close()


def _remove_unused(listener: Path) -> None:
    """Remove a port crailpy made, unless other subsystems still share it."""
    if not any((listener / "subsystems").iterdir()):
        listener.rmdir()


class KernelInitiator:
    """The kernel's NVMe/TCP initiator connected to `nqn` at host:port; `device` is its
    namespace 1 as a block device."""

    def __init__(self, nqn: str, host: str, port: int, timeout: float = 30.0) -> None:
        if not FABRICS.exists():
            load_modules("nvme_tcp")
        if not FABRICS.exists():
            raise CrailError("no kernel NVMe/TCP initiator (nvme_tcp; needs root)")
        FABRICS.write_text(f"transport=tcp,traddr={host},trsvcid={port},nqn={nqn}")
        deadline = time.monotonic() + timeout
        self.controller = None
        while self.controller is None:
            for path in Path("/sys/class/nvme").glob("nvme*"):
                if (path / "subsysnqn").read_text().strip() == nqn:
                    self.controller = path
            if time.monotonic() > deadline:
                raise CrailError(f"the kernel made no controller for {nqn}")
            time.sleep(0.1)
        self.device = Path("/dev") / f"{self.controller.name}n1"
        while not self.device.exists():
            if time.monotonic() > deadline:
                raise CrailError(f"{self.device} did not appear")
            time.sleep(0.1)

    def disconnect(self) -> None:
        (self.controller / "delete_controller").write_text("1")
