"""crailpy's NVMe/TCP initiator against the Linux kernel's NVMe target (nvmet over TCP).

The kernel target needs root and the nvmet modules: scripts/vm-test.sh runs
these in the test-bed VM, whose Debian kernel has them; elsewhere they skip.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from crailpy.datanode_nvmf import nvmet
from crailpy.protocol import nvme_tcp
from crailpy.transports.nvme_initiator import READ, Controller, NvmeError

WHY = nvmet.available() if os.geteuid() == 0 else "needs root"
pytestmark = pytest.mark.skipif(WHY is not None,
                                reason=f"{WHY}: scripts/vm-test.sh runs these in a VM with nvmet")
PORT = nvme_tcp.PORT  # the NVMe/TCP port
IMAGE_SIZE = 64 << 20


@pytest.fixture
def target() -> Iterator[tuple[str, Path]]:
    """A subsystem with one file-backed namespace, exported over TCP on 127.0.0.1:4420."""
    nqn = f"nqn.2026-11.io.crailpy:test-{uuid.uuid4().hex[:8]}"
    image = Path("/dev/shm") / f"{nqn.rsplit(':', 1)[1]}.img"  # tmpfs: buffered I/O
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    export = nvmet.Export(nqn, str(image), "127.0.0.1", PORT)
    try:
        yield nqn, image
    finally:
        export.remove()
        image.unlink()


@pytest.fixture
def controller(target: tuple[str, Path]) -> Iterator[Controller]:
    ctrl = Controller("127.0.0.1", PORT, target[0])
    yield ctrl
    ctrl.close()


def test_bring_up_identify_and_namespace(controller: Controller) -> None:
    identify = controller.identify(1)
    assert identify[24:64].strip()  # a model number
    assert struct.unpack_from("<H", identify, 78)[0] == controller.cntlid  # the one Connect gave
    assert controller.in_capsule > 0
    ns = controller.namespace(1)
    assert ns.block_size in (512, 4096) and ns.blocks * ns.block_size == IMAGE_SIZE


def test_bytes_written_by_us_are_in_the_kernels_backing_file_and_back(
        target: tuple[str, Path], controller: Controller) -> None:
    image = target[1]
    ns = controller.namespace(1)
    # one block (in the capsule), then 64 KiB and 1 MiB (on the target's R2T)
    for lba, size in ((0, ns.block_size), (7, 64 << 10), (1000, 1 << 20)):
        data = os.urandom(size)
        controller.write(ns, lba, memoryview(data))
        back = bytearray(size)
        controller.read(ns, lba, memoryview(back))
        assert back == data
        with open(image, "rb") as f:  # what the kernel target wrote
            f.seek(lba * ns.block_size)
            assert f.read(size) == data
    # bytes put there by the other side come back through us
    with open(image, "r+b") as f:
        f.seek(3 * ns.block_size)
        f.write(b"from the kernel side".ljust(ns.block_size, b"."))
    back = bytearray(ns.block_size)
    controller.read(ns, 3, memoryview(back))
    assert back.startswith(b"from the kernel side")
    with pytest.raises(NvmeError):
        controller.read(ns, ns.blocks, memoryview(bytearray(ns.block_size)))  # past the end


def test_many_commands_in_flight_and_many_threads(controller: Controller) -> None:
    ns = controller.namespace(1)
    data = os.urandom(64 * ns.block_size)
    controller.write(ns, 0, memoryview(data))
    back = bytearray(len(data))
    view = memoryview(back)
    pending = [controller.io.submit(nvme_tcp.read_write(READ, 1, i, 1),
                                    data_in=view[i * ns.block_size : (i + 1) * ns.block_size])
               for i in range(64)]
    assert all(p.wait() == 0 for p in pending)  # 64 in flight on one queue
    assert back == data

    def worker(i: int) -> None:
        mine = os.urandom(16 * ns.block_size)
        for _ in range(3):
            controller.write(ns, 100 + 16 * i, memoryview(mine))
            got = bytearray(len(mine))
            controller.read(ns, 100 + 16 * i, memoryview(got))
            assert got == mine

    with ThreadPoolExecutor(4) as pool:  # four threads sharing the queues
        list(pool.map(worker, range(4)))  # re-raises what a worker raised


def test_keep_alive_holds_an_idle_controller(target: tuple[str, Path]) -> None:
    ctrl = Controller("127.0.0.1", PORT, target[0], kato_ms=2000)
    try:
        ns = ctrl.namespace(1)
        time.sleep(6)  # three keep-alive timeouts without I/O: only Keep Alive holds it
        ctrl.write(ns, 0, memoryview(bytes(ns.block_size)))
    finally:
        ctrl.close()


@pytest.mark.parametrize("offset, size", [(0, 1), (100, 5), (4000, 200), (3, 3 << 20), (4096, 4096)])
def test_unaligned_reads_and_writes(target: tuple[str, Path], controller: Controller,
                                    offset: int, size: int) -> None:
    image = target[1]
    ns = controller.namespace(1)
    with open(image, "r+b") as f:  # known bytes around the range, so that RMW must keep them
        f.write(bytes(range(256)) * (IMAGE_SIZE // 256 // 8))
    data = os.urandom(size)
    controller.pwrite(ns, offset, memoryview(data))
    back = bytearray(size)
    controller.pread(ns, offset, memoryview(back))
    assert back == data
    with open(image, "rb") as f:
        whole = f.read(offset + size + 2 * ns.block_size)
    assert whole[offset : offset + size] == data
    pattern = (bytes(range(256)) * (len(whole) // 256 + 1))[: len(whole)]
    assert whole[:offset] == pattern[:offset]  # the rest of the first block is intact
    assert whole[offset + size :] == pattern[offset + size :]  # and of the last
