"""The Linux kernel's NVMe over TCP: its target (nvmet, through configfs) and its initiator.

`Export` makes a subsystem with one namespace backed by a file or block device
and links it to a TCP port; `remove()` takes down exactly what it made. The
flash datanode's `nvmet` back end and the tests use it. `KernelInitiator`
connects the kernel's own initiator to a target and finds the block device it
makes: the tests and the benchmark compare crailpy against it. Both need root
and the kernel's modules (loaded here if missing).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from crailpy.errors import CrailError

CONFIGFS = Path("/sys/kernel/config")
NVMET = CONFIGFS / "nvmet"
FABRICS = Path("/dev/nvme-fabrics")


def available() -> str | None:
    """Why the kernel target cannot be used here, or None."""
    if not NVMET.exists():
        subprocess.run(["modprobe", "-q", "nvmet", "nvmet_tcp"], capture_output=True)
        if not CONFIGFS.is_mount():
            subprocess.run(["mount", "-t", "configfs", "none", str(CONFIGFS)], capture_output=True)
    return None if NVMET.exists() else "no kernel NVMe target (nvmet; needs root)"


class Export:
    def __init__(self, nqn: str, path: str, host: str, port: int, port_id: int = 1,
                 buffered: bool = True) -> None:
        """Export `path` as namespace 1 of subsystem `nqn` on tcp host:port. `buffered`: through
        the page cache (nvmet opens files with O_DIRECT otherwise, which tmpfs refuses)."""
        reason = available()
        if reason:
            raise CrailError(reason)
        self.subsystem = NVMET / "subsystems" / nqn
        self.subsystem.mkdir()
        (self.subsystem / "attr_allow_any_host").write_text("1")
        self.namespace = self.subsystem / "namespaces" / "1"
        self.namespace.mkdir()
        (self.namespace / "device_path").write_text(path)
        (self.namespace / "buffered_io").write_text("1" if buffered else "0")
        (self.namespace / "enable").write_text("1")
        self.port = NVMET / "ports" / str(port_id)
        self._made_port = not self.port.exists()
        self.port.mkdir(exist_ok=True)
        for name, value in (("addr_trtype", "tcp"), ("addr_adrfam", "ipv4"),
                            ("addr_traddr", host), ("addr_trsvcid", str(port))):
            if (self.port / name).read_text().strip() != value:
                (self.port / name).write_text(value)
        self.link = self.port / "subsystems" / nqn
        self.link.symlink_to(self.subsystem)

    def remove(self) -> None:
        self.link.unlink()
        (self.namespace / "enable").write_text("0")
        self.namespace.rmdir()
        self.subsystem.rmdir()
        if self._made_port:
            self.port.rmdir()


class KernelInitiator:
    """The kernel's NVMe/TCP initiator connected to `nqn` at host:port; `device` is its
    namespace 1 as a block device."""

    def __init__(self, nqn: str, host: str, port: int, timeout: float = 30.0) -> None:
        if not FABRICS.exists():
            subprocess.run(["modprobe", "-q", "nvme_tcp"], capture_output=True)
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
