"""The nvmf flash tier in process: a datanode exporting its namespace over NVMe/TCP
(the built-in target here; tests/nvmf/test_backends.py runs nvmet and SPDK), and
clients moving flash blocks with the target directly."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

import crailpy
from crailpy.errors import Status
from crailpy.protocol import frames
from crailpy.protocol import messages as m
from crailpy.transports.nvme_initiator import Controller
from tests.cluster.conftest import BLOCK, Cluster
from tests.cluster.test_hostile import read_reply


@pytest.fixture
def flash(cluster: Cluster) -> Iterator[crailpy.Store]:
    with cluster.connect() as store:
        store.mkdir("/cold", storage_class="flash")
        yield store


def nvmf_datanode(cluster: Cluster):
    return next(d for d in cluster.datanodes if d.export is not None)


def test_flash_blocks_move_over_nvmf_and_land_in_the_namespace(cluster: Cluster,
                                                               flash: crailpy.Store) -> None:
    node = nvmf_datanode(cluster)
    info = next(d for d in flash.usage()[1] if d.address.endswith(f":{node.server.port}"))
    assert (info.storage_class, info.transports, info.transport) == ("flash", "nvmf", "nvmf")
    data = os.urandom(3 * BLOCK + 777)
    flash.put("/cold/f", data)
    assert {loc.transport for loc in flash.block_locations("/cold/f")} == {"nvmf"}
    assert flash.get("/cold/f") == data
    # The bytes are in the exported namespace itself, at the block's offset: read them
    # back with a controller of our own, as any NVMe/TCP host would.
    with flash.open("/cold/f") as f:
        holder, block = f._location(1)
    node = next(d for d in cluster.datanodes if d.id == holder.id)
    ctrl = Controller(node.server.host, node.export.port, node.export.nqn)
    try:
        ns = ctrl.namespace(1)
        assert ns.blocks * ns.block_size == node.capacity
        back = bytearray(BLOCK)
        ctrl.pread(ns, block.offset, memoryview(back))
        assert back == data[BLOCK : 2 * BLOCK]
    finally:
        ctrl.close()


def test_unaligned_writes_sharing_lbas_stay_intact(flash: crailpy.Store) -> None:
    # Odd sizes with a flush between: consecutive transfers share partly covered LBAs,
    # which the client reads, patches and writes back one at a time.
    sizes = [1, 511, 513, 4095, 4097, 1000, 70_001, 3, BLOCK + 5, 12_345]
    pieces = [os.urandom(n) for n in sizes]
    with flash.create("/cold/odd") as f:
        for piece in pieces:
            f.write(piece)
            f.flush()
    data = b"".join(pieces)
    assert flash.get("/cold/odd") == data
    with flash.open("/cold/odd") as f:  # unaligned reads, partial first and last LBAs
        for start, length in ((1, 10), (4095, 2), (511, 70_000), (len(data) - 7, 7)):
            out = bytearray(length)
            f.pread(memoryview(out), start)
            assert out == data[start : start + length]


def test_many_writers_and_readers_at_once(flash: crailpy.Store) -> None:
    blobs = {f"/cold/c{i}": os.urandom(BLOCK // 2 + 4096 * i + i) for i in range(12)}

    def put(item: tuple[str, bytes]) -> None:
        flash.put(*item)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(put, blobs.items()))
        assert list(pool.map(flash.get, blobs)) == list(blobs.values())


def test_the_datanode_serves_no_block_bytes_over_tcp(cluster: Cluster) -> None:
    node = nvmf_datanode(cluster)
    sock = socket.create_connection((node.server.host, node.server.port))
    try:
        sock.sendall(frames.encode_request(m.Read(node.id, 10, 0, 1), 1))
        header, body = read_reply(sock)
        assert header.status == Status.INVALID
        assert b"NVMe/TCP only" in body
        sock.sendall(frames.encode_request(m.Ping(), 2))  # and the connection goes on
        assert read_reply(sock)[0].status == Status.OK
    finally:
        sock.close()


def test_stopping_removes_the_file_it_made_and_leaves_one_it_was_given(
        cluster: Cluster, tmp_path: Path) -> None:
    made = cluster.add_datanode("nvmf", 4 * BLOCK)
    made_path = made.export.backing.path
    given = tmp_path / "given.img"
    given.write_bytes(b"keep me")
    kept = cluster.add_datanode("nvmf", 4 * BLOCK, path=str(given))
    assert os.path.getsize(made_path) == 4 * BLOCK
    made.stop()
    kept.stop()
    assert not os.path.exists(made_path)
    assert given.read_bytes()[:7] == b"keep me"


def test_a_new_registration_cuts_off_the_old_export(cluster: Cluster,
                                                    flash: crailpy.Store) -> None:
    node = nvmf_datanode(cluster)
    old = node.export.nqn, node.export.port
    node._register()  # the namenode dropped our blocks: clients' locations are stale
    assert (node.export.nqn, node.export.port) != old
    with pytest.raises(OSError):  # refused: the built-in target's port is closed, nvmet's
        Controller(node.server.host, old[1], old[0], timeout=2.0)  # refuses the old NQN
    flash.put("/cold/after", b"new export")
    assert flash.get("/cold/after") == b"new export"
