"""Block keys in a live cluster: a freed block's old location fails, live files go on.

Runs over TCP here and over RDMA in the test bed (tests/testbed.py), where the
key is the rkey of the region's memory registration and the device refuses it.
"""

from __future__ import annotations

import os
import time

import pytest

import crailpy
from crailpy.datanode import Datanode
from crailpy.errors import Stale
from tests import testbed
from tests.cluster.conftest import BLOCK, Cluster

HERE = 7  # the location class of the datanode these tests use


@pytest.fixture
def own(cluster: Cluster) -> Datanode:
    """8 MiB in key regions of 8 blocks, so that files share a key (the default is a block)."""
    return cluster.add_datanode("dram", 8 << 20, location_class=HERE, key_region=8 * BLOCK)


def put(store: crailpy.Store, path: str, data: bytes) -> None:
    with store.create(path, location_class=HERE, size_hint=len(data), exact=True) as f:
        f.write(data)


def wait_freed(store: crailpy.Store) -> None:
    """Until every freed block is reusable: its region's key changed and the old one retired."""
    deadline = time.monotonic() + 5 * testbed.SLOW
    while sum(c.freeing for c in store.usage()[0]):
        assert time.monotonic() < deadline, f"still freeing: {store.usage()[0]}"
        time.sleep(0.02)


@testbed.not_over_nvmf("keys guard the TCP and RDMA paths; NVMe/TCP has none (docs/nvmf.md)")
def test_a_kept_location_of_a_freed_block_gets_an_error_not_the_next_owners_bytes(
        store: crailpy.Store, own: Datanode) -> None:
    put(store, "/old", b"o" * BLOCK)
    datanode, block = store.open("/old")._location(0)
    assert datanode.id == own.id
    store.delete("/old")
    assert sum(c.freeing for c in store.usage()[0]) == BLOCK
    wait_freed(store)
    put(store, "/new", b"n" * BLOCK)
    _, reused = store.open("/new")._location(0)
    assert reused.offset == block.offset and reused.key != block.key  # the same memory
    dest = bytearray(BLOCK)
    with pytest.raises(Stale):
        store._endpoint(datanode, "/old", 0).read(block, 0, memoryview(dest)).result()
    assert dest == bytearray(BLOCK)  # nothing of /new's bytes
    with pytest.raises(Stale):
        store._endpoint(datanode, "/old", 0).write(block, 0, memoryview(b"x" * BLOCK)).result()
    assert store.get("/new") == b"n" * BLOCK
    reader = store.open("/new")
    store.delete("/new")
    wait_freed(store)
    with pytest.raises(FileNotFoundError):  # through the file API: refused, looked up, gone
        reader.read()


@testbed.not_over_nvmf("keys guard the TCP and RDMA paths; NVMe/TCP has none (docs/nvmf.md)")
def test_live_readers_and_writers_carry_on_across_a_key_change(
        store: crailpy.Store, own: Datanode) -> None:
    live, growing = os.urandom(3 * BLOCK), os.urandom(3 * BLOCK)
    put(store, "/live", live)  # blocks 0-2 of the datanode
    put(store, "/neighbour", os.urandom(2 * BLOCK))  # blocks 3-4: the same key region
    reader = store.open("/live")
    assert reader.read() == live  # its locations are now known, under the region's key
    writer = store.create("/growing", location_class=HERE)
    writer.write(growing[: 3 * BLOCK // 2])  # into blocks 5 and 6, region 0 still
    before = reader._location(0)[1].key
    store.delete("/neighbour")
    wait_freed(store)
    assert store.open("/live")._location(0)[1].key != before  # region 0 has a new key
    reader.seek(0)
    assert reader.read() == live  # refused once, looked up again, read
    assert reader._location(0)[1].key != before
    writer.write(growing[3 * BLOCK // 2 :])
    writer.close()
    assert store.get("/growing") == growing
