"""The Linux kernel's NVMe/TCP initiator against crailpy's built-in target.

Needs root and the nvme_tcp module (/dev/nvme-fabrics): scripts/vm-test.sh runs
it in the test-bed VM; elsewhere it skips.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator

import pytest

from crailpy.datanode_nvmf import nvmet
from crailpy.datanode_nvmf.target import Target
from crailpy.transports.nvme_initiator import Controller
from tests import testbed

NQN = "nqn.2026-11.io.crailpy:kernel-initiator-test"
SIZE = 16 << 20


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not nvmet.FABRICS.exists():
        nvmet.load_modules("nvme_tcp")
    return None if nvmet.FABRICS.exists() else "no kernel NVMe/TCP initiator (nvme_tcp)"


WHY = _unavailable()
pytestmark = pytest.mark.skipif(WHY is not None,
                                reason=f"{WHY}: scripts/vm-test.sh runs this in a VM")


@pytest.fixture
def kernel_device(tmp_path: Path) -> Iterator[tuple[Target, Path, Path]]:
    """Our target, and the block device the kernel made of it."""
    image = tmp_path / "ns.img"
    target = Target("127.0.0.1", 0, NQN, str(image), SIZE).start()
    kernel = nvmet.KernelInitiator(NQN, "127.0.0.1", target.port, timeout=30 * testbed.SLOW)
    try:
        yield target, kernel.device, image
    finally:
        kernel.disconnect()
        target.stop()


def _direct(device: Path, offset: int, data: bytes | None, length: int = 0) -> bytes:
    """O_DIRECT I/O through the kernel's block device, from a page-aligned buffer."""
    buf = mmap.mmap(-1, len(data) if data is not None else length)
    fd = os.open(device, (os.O_RDWR if data is not None else os.O_RDONLY) | os.O_DIRECT)
    try:
        if data is not None:
            buf[:] = data
            assert os.pwritev(fd, [buf], offset) == len(data)
            return data
        assert os.preadv(fd, [buf], offset) == length
        return bytes(buf)
    finally:
        os.close(fd)
        buf.close()


def test_kernel_and_crailpy_read_each_others_bytes(kernel_device) -> None:
    target, device, image = kernel_device
    assert Path(f"/sys/class/block/{device.name}/size").read_text().strip() == str(SIZE // 512)
    ours = Controller("127.0.0.1", target.port, NQN)
    try:
        ns = ours.namespace(1)
        from_kernel = _direct(device, 1 << 20, os.urandom(256 << 10))
        back = bytearray(len(from_kernel))
        ours.read(ns, (1 << 20) // ns.block_size, memoryview(back))
        assert back == from_kernel

        from_us = os.urandom(192 << 10)
        ours.write(ns, (4 << 20) // ns.block_size, memoryview(from_us))
        assert _direct(device, 4 << 20, None, len(from_us)) == from_us
        with open(image, "rb") as f:
            f.seek(4 << 20)
            assert f.read(len(from_us)) == from_us
    finally:
        ours.close()
