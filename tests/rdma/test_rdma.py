"""The RDMA data path against real verbs: SoftRoCE in the VM test bed (scripts/vm-test.sh).

On a machine without an RDMA device these tests skip and say so; the test bed
runs them on every CI run. The whole cluster tier also runs over RDMA there
(tests/testbed.py); these are the checks that only RDMA has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from crailpy import verbs
from crailpy.errors import BlockLost, Displaced, Stale, Unreachable
from crailpy.transports.rdma import RdmaEndpoint
from tests import testbed
from tests.cluster.conftest import BLOCK, Cluster, start_cluster

WHY = verbs.unavailable()
if WHY is not None and testbed.TRANSPORT == "rdma":
    raise RuntimeError(f"the RDMA test bed has no usable RDMA: {WHY}")
pytestmark = pytest.mark.skipif(
    WHY is not None, reason=f"{WHY}: scripts/vm-test.sh runs these in a VM with SoftRoCE")

RDMA = {"address": f"{testbed.RDMA_HOST}:0", "rdma": "on"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path, dram=0, flash=0, inline_max=0)  # every byte in blocks
    for _ in range(2):
        c.add_datanode("dram", 8 << 20, **RDMA)
    yield c
    c.stop()


def datanode_info(store, path: str, index: int = 0):
    reader = store.open(path)
    return reader._location(index)


def test_dram_blocks_move_by_rdma_across_block_boundaries(cluster: Cluster) -> None:
    store = cluster.connect(transport="rdma")
    for size in (1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 7):
        data = os.urandom(size)
        store.put(f"/f{size}", data)
        assert store.get(f"/f{size}") == data
    datanode, _ = datanode_info(store, f"/f{5 * BLOCK + 7}")
    assert store.transport_for(datanode) == "rdma"


def test_reads_land_in_the_callers_numpy_array(cluster: Cluster) -> None:
    store = cluster.connect(transport="rdma")  # whole blocks straight in, the tail staged
    data = np.arange(3 * BLOCK // 8 + 5, dtype=np.int64)
    store.put("/array", data)
    back = np.zeros_like(data)
    with store.open("/array") as f:
        assert f.readinto(back) == data.nbytes
    assert np.array_equal(back, data)


@pytest.mark.parametrize("size", [2 * BLOCK, 100])  # a small file's close writes at once
def test_a_write_is_in_the_datanodes_memory_when_close_returns(cluster: Cluster, size: int) -> None:
    store = cluster.connect(transport="rdma")
    data = os.urandom(size)
    with store.create("/placed") as f:
        f.write(data)
    for index in range(-(-size // BLOCK)):
        datanode, block = datanode_info(store, "/placed", index)
        node = next(d for d in cluster.datanodes if d.id == datanode.id)
        piece = data[index * BLOCK : (index + 1) * BLOCK]
        assert node.store.memory[block.offset : block.offset + len(piece)] == piece


@pytest.mark.parametrize("forge", ["key", "address"])
@pytest.mark.parametrize("way", ["read", "read_now", "write_now"])
def test_a_forged_key_or_address_gets_an_error_not_bytes(cluster: Cluster, forge: str,
                                                         way: str) -> None:
    store = cluster.connect(transport="rdma")
    store.put("/secret", b"s" * 4096)
    datanode, block = datanode_info(store, "/secret")
    region = datanode.rdma
    if forge == "key":
        block = block._replace(key=block.key ^ 0x5A5A00)
    else:  # just past the end of the pool
        region = region._replace(address=region.address + (8 << 20))
    endpoint = RdmaEndpoint(datanode._replace(rdma=region), store.config.client)
    dest = bytearray(4096)
    with pytest.raises(Stale):
        if way == "read":  # through a staging slot, in a window
            endpoint.read(block, 0, memoryview(dest)).result()
        elif way == "read_now":  # one C call through the queue pair's scratch
            endpoint.read_now(block, 0, memoryview(dest))
        else:
            endpoint.write_now(block, 0, memoryview(b"w" * 4096))
    assert dest == bytearray(4096) and endpoint.broken
    with pytest.raises(Displaced):  # what it had in flight, or starts, fails as refused under it
        endpoint.read_now(block, 0, memoryview(dest))
    endpoint.close()
    assert store.get("/secret") == b"s" * 4096  # the store's own endpoint is unharmed


def test_confirm_answers_for_the_writes_before_it(cluster: Cluster) -> None:
    """A WRITE is done once the datanode's device acknowledged it; `confirm` makes sure it
    is placed, and takes the refusal of a later request (a forged key broke the queue
    pair) as an answer that came after it. A queue pair gone without an answer cannot
    confirm anything: it raises, and the writer's close would fail instead of COMMIT."""
    store = cluster.connect(transport="rdma")
    writer = store.create("/confirmed", size_hint=4096, exact=True)
    datanode, block = writer._blocks[0]
    memory = next(d for d in cluster.datanodes if d.id == datanode.id).store.memory
    placed = lambda: bytes(memory[block.offset : block.offset + 4096])  # noqa: E731
    endpoint = RdmaEndpoint(datanode, store.config.client)
    assert endpoint.write_now(block, 0, memoryview(b"p" * 4096), placed=True) == 4096
    assert placed() == b"p" * 4096  # confirmed with the write, in the same C call
    assert endpoint.write_now(block, 0, memoryview(b"c" * 4096)) == 4096
    endpoint.confirm()
    assert placed() == b"c" * 4096
    endpoint.write(block, 0, memoryview(b"d" * 4096)).result()
    with pytest.raises(Stale):
        endpoint.read_now(block._replace(key=block.key ^ 0x5A5A00), 0, memoryview(bytearray(8)))
    endpoint.confirm()
    assert placed() == b"d" * 4096
    endpoint.close()
    lost = RdmaEndpoint(datanode, store.config.client)
    lost.write(block, 0, memoryview(b"e" * 4096)).result()
    lost.close()
    with pytest.raises(Unreachable):
        lost.confirm()
    writer.abort()


def test_a_bound_block_outlives_its_connection_safely(cluster: Cluster) -> None:
    """A reader keeps the blocks it reads bound to an endpoint; once that endpoint closes
    (as the store closes one that failed), a bound transfer answers None, with no bytes
    moved and no crash, and the reader goes on through a new endpoint."""
    store = cluster.connect(transport="rdma")
    data = os.urandom(4096)
    store.put("/bound", data)
    reader = store.open("/bound")
    dest = bytearray(4096)
    reader.pread(memoryview(dest), 0)  # binds block 0
    datanode, block = reader._location(0)
    old = store._endpoint(datanode, "/bound", 0)
    bound = old.bind(block)
    old.close()
    dest[:] = bytes(4096)
    assert bound.read_now(0, memoryview(dest)) is None and dest == bytes(4096)
    reader.pread(memoryview(dest), 0)
    assert dest == data and store._endpoint(datanode, "/bound", 0) is not old
    del old
    assert bound.write_now(0, memoryview(dest)) is None  # the queue pair's memory is still there


def test_transfers_at_once_and_in_windows_share_a_queue_pair(cluster: Cluster) -> None:
    """A bound block's transfer runs alone on the queue pair, and only when nothing else
    is in flight there: from several threads at once, with windows of transfers in flight
    beside them, every byte lands where it belongs."""
    store = cluster.connect(transport="rdma")
    data = os.urandom(8 * BLOCK)
    with store.create("/shared", location_class=0) as f:
        f.write(data)
    reader = store.open("/shared")
    errors: list[BaseException] = []

    def small_reads(seed: int) -> None:
        try:
            for i in range(200):
                at = (seed * 7919 + i * 4099) % (len(data) - 4096)
                dest = bytearray(min(4096, BLOCK - at % BLOCK))
                reader.pread(memoryview(dest), at)
                assert dest == data[at : at + len(dest)]
        except BaseException as exc:
            errors.append(exc)

    def whole_reads() -> None:
        try:
            for _ in range(10):
                assert store.get("/shared") == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=small_reads, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=whole_reads))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600 * testbed.SLOW)
    assert not errors, errors
    assert store.transport_for(datanode_info(store, "/shared")[0]) == "rdma"


def test_each_key_region_is_a_registration_of_its_own(cluster: Cluster) -> None:
    store = cluster.connect(transport="rdma")
    node = cluster.datanodes[0]
    keys = [k for _, k in node.keys.all()]
    assert len(keys) == len(set(keys)) == (8 << 20) // BLOCK  # a region per block by default
    with store.create("/spread", location_class=0) as f:
        f.write(os.urandom(8 * BLOCK))
    for index in range(8):
        datanode, block = datanode_info(store, "/spread", index)
        if datanode.id == node.id:  # its key is the rkey of the region holding it
            assert block.key == keys[block.offset // node.keys.region_size]


def test_a_stopped_datanode_fails_reads_cleanly(cluster: Cluster) -> None:
    store = cluster.connect(transport="rdma")
    store.put("/gone", os.urandom(BLOCK))
    datanode, _ = datanode_info(store, "/gone")
    reader = store.open("/gone")
    victim = next(d for d in cluster.datanodes if d.id == datanode.id)
    victim.stop()
    cluster.datanodes.remove(victim)
    with pytest.raises((Unreachable, BlockLost)):
        reader.read()


def test_tcp_and_rdma_clients_see_the_same_bytes(cluster: Cluster) -> None:
    over_rdma, over_tcp = cluster.connect(transport="rdma"), cluster.connect(transport="tcp")
    data = os.urandom(3 * BLOCK + 11)
    over_rdma.put("/mixed", data)
    assert over_tcp.get("/mixed") == data
    over_tcp.put("/mixed2", data)
    assert over_rdma.get("/mixed2") == data
    datanode, _ = datanode_info(over_tcp, "/mixed")
    assert over_tcp.transport_for(datanode) == "tcp"


def test_rdma_is_refused_clearly_where_a_datanode_does_not_offer_it(cluster: Cluster) -> None:
    cluster.add_datanode("dram", 8 << 20, address=f"{testbed.RDMA_HOST}:0", rdma="off",
                         location_class=5)
    store = cluster.connect(transport="rdma")
    with pytest.raises(Unreachable, match="cannot use rdma: the datanode does not offer it"):
        with store.create("/tcp-only", location_class=5) as f:
            f.write(b"x")


def test_a_datanode_registering_again_invalidates_old_keys(cluster: Cluster) -> None:
    store = cluster.connect(transport="rdma")
    store.put("/before", os.urandom(BLOCK))
    datanode, _ = datanode_info(store, "/before")
    node = next(d for d in cluster.datanodes if d.id == datanode.id)
    writer = store.create("/during", location_class=0)
    writer.write(os.urandom(BLOCK // 2))  # buffered, or in flight: the file is not committed
    reader = store.open("/before")
    old_keys = set(node.keys.all())
    node._register()  # as after being declared dead: the namenode dropped its blocks
    assert not old_keys & set(node.keys.all())
    with pytest.raises((Stale, BlockLost)):
        reader.read()  # the old key: an error from the device, never the memory's new owner
    with pytest.raises((Stale, BlockLost, Unreachable)):
        writer.write(os.urandom(4 * BLOCK))
        writer.close()
    assert not store.exists("/during")


def test_rdma_info_lists_the_device_its_port_and_gids() -> None:
    result = subprocess.run([sys.executable, "-m", "crailpy", "rdma", "info"], capture_output=True,
                            text=True, timeout=60 * testbed.SLOW)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "rxe0: node GUID" in text and "port 1: ACTIVE, Ethernet, MTU" in text
    assert f"::ffff:{testbed.RDMA_HOST}" in text  # the RoCE v2 GID of the rxe device's address
    assert "crailpy rdma transport: usable" in text


def test_auto_falls_back_to_tcp_where_rdma_cannot_connect(cluster: Cluster) -> None:
    # On every address, advertised as the one that reaches the namenode (127.0.0.1), where
    # RDMA CM cannot route: the datanode offers RDMA that no client can reach.
    node = cluster.add_datanode("dram", 8 << 20, address="0.0.0.0:0", rdma="on", location_class=6)
    assert node.rdma_region.port
    store = cluster.connect()  # client.transport = auto
    with store.create("/fallback", location_class=6) as f:
        f.write(b"y" * 5000)
    assert store.get("/fallback") == b"y" * 5000
    [location] = store.block_locations("/fallback")
    assert location.transport == "tcp" and location.address.startswith("127.0.0.1:")
    with pytest.raises(Unreachable, match="rdma"):  # and strict rdma says why
        cluster.connect(transport="rdma").get("/fallback")
