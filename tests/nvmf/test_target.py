"""crailpy's built-in NVMe/TCP target, driven by crailpy's initiator and by hostile bytes.

Runs anywhere: the target is a Python server on a loopback port. The kernel's
initiator against it runs in the VM (tests/nvmf/test_kernel_initiator.py).
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path
from typing import Iterator

import pytest

from crailpy.datanode_nvmf.target import Target
from crailpy.errors import Unreachable
from crailpy.protocol import nvme_tcp as t
from crailpy.transports.nvme_initiator import WRITE, Controller, NvmeError

NQN = "nqn.2026-11.io.crailpy:builtin-test"
SIZE = 16 << 20


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    server = Target("127.0.0.1", 0, NQN, str(tmp_path / "ns.img"), SIZE).start()
    yield server
    server.stop()


def test_our_initiator_reads_and_writes_the_backing_file(target: Target, tmp_path: Path) -> None:
    ctrl = Controller("127.0.0.1", target.port, NQN)
    try:
        ns = ctrl.namespace(1)
        assert (ns.blocks, ns.block_size) == (SIZE // 4096, 4096)
        assert ctrl.in_capsule == 8 << 10 and ctrl.max_transfer == 128 << 10
        for offset, size in ((0, 4096), (8192, 8192), (1 << 20, 1 << 20), (5, 10_000)):
            data = os.urandom(size)
            ctrl.pwrite(ns, offset, memoryview(data))  # in the capsule, on R2T, split, unaligned
            back = bytearray(size)
            ctrl.pread(ns, offset, memoryview(back))
            assert back == data
            with open(tmp_path / "ns.img", "rb") as f:
                f.seek(offset)
                assert f.read(size) == data
        with pytest.raises(NvmeError):
            ctrl.read(ns, ns.blocks, memoryview(bytearray(4096)))
    finally:
        ctrl.close()



def test_a_namespace_of_one_byte_lbas_takes_transfers_over_65536_blocks(tmp_path: Path) -> None:
    """nvmet gives a file on 9p 1-byte LBAs; a command's 16-bit block count then binds
    before MDTS does, and a longer command would be refused (or worse, misread)."""
    server = Target("127.0.0.1", 0, NQN, str(tmp_path / "ns.img"), SIZE, block_size=1).start()
    ctrl = Controller("127.0.0.1", server.port, NQN)
    try:
        ns = ctrl.namespace(1)
        assert ns.block_size == 1 and ctrl.max_transfer > 1 << 16
        data = os.urandom(1 << 20)
        ctrl.pwrite(ns, 0, memoryview(data))
        back = bytearray(len(data))
        ctrl.pread(ns, 0, memoryview(back))
        assert back == data
    finally:
        ctrl.close()
        server.stop()

def test_a_wrong_subsystem_is_refused(target: Target) -> None:
    with pytest.raises(NvmeError, match="connect"):
        Controller("127.0.0.1", target.port, "nqn.2026-11.io.crailpy:nobody")


@pytest.mark.parametrize("garbage", [
    b"\xff" * 64,  # no such PDU type
    bytes([0x04, 0, 72, 0]) + struct.pack("<I", 1 << 30),  # an absurd length
    b"".join(t.encode(t.PduType.H2C_DATA, t.DataHeader(1, 1, 0, 4), b"abcd")),  # out of sequence
])
def test_hostile_pdus_get_a_termination_request_and_others_go_on(target: Target,
                                                                 garbage: bytes) -> None:
    good = Controller("127.0.0.1", target.port, NQN)
    try:
        with socket.create_connection(("127.0.0.1", target.port), timeout=5) as sock:
            sock.sendall(b"".join(t.encode(t.PduType.IC_REQ, t.ICReq())))
            decoder = t.PduDecoder(t.PduDecoder.FROM_CONTROLLER)
            received = []
            sock.sendall(garbage)
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break  # the target closed this connection
                decoder.feed(chunk)
                while (pdu := decoder.next_pdu()) is not None:
                    received.append(pdu)
        assert [p.type for p in received] == [t.PduType.IC_RESP, t.PduType.C2H_TERM_REQ]
        assert received[1].body.fes in set(t.Fes)
        ns = good.namespace(1)  # the other connection is served as before
        good.write(ns, 0, memoryview(bytes(4096)))
    finally:
        good.close()


def test_a_host_that_leaves_mid_write_does_not_stop_the_target(target: Target) -> None:
    ctrl = Controller("127.0.0.1", target.port, NQN)
    ns = ctrl.namespace(1)
    pending = ctrl.io.submit(t.read_write(WRITE, ns.nsid, 0, 32),
                             bytes(128 << 10))  # the target sends R2T; we never answer
    ctrl.io.sock.close()
    with pytest.raises((Unreachable, OSError)):
        pending.wait()
    again = Controller("127.0.0.1", target.port, NQN)
    again.write(again.namespace(1), 0, memoryview(b"x" * 4096))
    again.close()


def test_the_namespace_bypasses_the_page_cache_where_the_filesystem_can(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_DIRECT))
        expected = True
    except OSError:  # tmpfs, for one
        expected = False
    server = Target("127.0.0.1", 0, NQN, str(tmp_path / "direct.img"), SIZE).start()
    try:
        assert server.direct is expected
        ctrl = Controller("127.0.0.1", server.port, NQN)
        ns = ctrl.namespace(1)
        data = os.urandom(3 * 4096 + 100)
        ctrl.pwrite(ns, 4000, memoryview(data))  # through aligned buffers either way
        back = bytearray(len(data))
        ctrl.pread(ns, 4000, memoryview(back))
        assert back == data
        ctrl.close()
    finally:
        server.stop()
