"""The allocator alone: whole blocks, chunks split buddy-fashion, trimming and merging,
and freed chunks held back until their key region's key changes."""

from __future__ import annotations

import random

import pytest

from crailpy.errors import NoSpace
from crailpy.namenode.blocks import UNIT, BlockAllocator, order_for, pack, unpack
from crailpy.protocol.messages import NO_RDMA

BLOCK = 16 * UNIT  # order 4


@pytest.fixture
def alloc() -> BlockAllocator:
    a = BlockAllocator(BLOCK, ["dram", "flash"])
    a.register("a", 1, 0, 0, 1, NO_RDMA, 4 * BLOCK, 0.0, 2 * BLOCK, [11, 22])
    return a


def used(a: BlockAllocator) -> int:
    return sum(n.used_units for n in a.datanodes.values())


def rotate(a: BlockAllocator) -> None:
    """What the datanode does when its heartbeat reply asks: new keys where blocks were
    freed, then the old keys retired."""
    for node in a.datanodes.values():
        for region, key in node.rotations():
            node.rotated(region, key + 1)
            node.retired(region, key)


def test_pack_round_trips() -> None:
    assert unpack(pack(123456, 7, 2**33 + 5)) == (123456, 7, 2**33 + 5)
    assert [order_for(n) for n in (0, 1, UNIT, UNIT + 1, 3 * UNIT, 4 * UNIT, 5 * UNIT)] == \
        [0, 0, 0, 1, 2, 2, 3]


def test_chunks_split_and_merge_back(alloc: BlockAllocator) -> None:
    small = alloc.allocate(0, -1, 3, order=0)
    assert [unpack(b)[2] for b in small] == [0, 1, 2]  # one block split, lowest units first
    assert used(alloc) == 3
    alloc.free(small)
    rotate(alloc)
    node = next(iter(alloc.datanodes.values()))
    assert used(alloc) == 0 and node.free[4] == {0} and not any(node.free[:4])


def test_trim_keeps_what_the_bytes_need(alloc: BlockAllocator) -> None:
    [block] = alloc.allocate(0, -1, 1)
    trimmed = alloc.trim(block, 3 * UNIT - 1)
    rotate(alloc)
    assert unpack(trimmed)[1:] == (2, 0) and used(alloc) == 4
    assert alloc.trim(trimmed, 4 * UNIT) == trimmed  # nothing to give back
    alloc.free([trimmed])
    rotate(alloc)
    assert used(alloc) == 0


def test_what_a_commit_gives_back_is_free_at_once(alloc: BlockAllocator) -> None:
    node = next(iter(alloc.datanodes.values()))
    blocks = alloc.allocate(0, -1, 4)
    alloc.commit_freed(blocks[2:])
    alloc.trim(blocks[1], UNIT)
    alloc.trim(blocks[0], BLOCK // 2)
    assert node.freeing_units == 0 and not node.rotations()  # no new key needed
    assert used(alloc) == BLOCK // UNIT // 2 + 1
    assert len(alloc.allocate(0, -1, 2)) == 2  # the unused blocks, again
    assert len(alloc.allocate(0, -1, 1, order=3)) == 1  # half of the first block's tail


def test_fragments_serve_small_requests_before_new_blocks(alloc: BlockAllocator) -> None:
    [block] = alloc.allocate(0, -1, 1)
    alloc.trim(block, UNIT)
    node = next(iter(alloc.datanodes.values()))
    before = node.next_unused
    alloc.allocate(0, -1, 15, order=0)
    assert node.next_unused == before and used(alloc) == 16  # the first block, filled up


def test_whole_blocks_run_out_while_fragments_remain(alloc: BlockAllocator) -> None:
    blocks = alloc.allocate(0, -1, 4)
    for b in blocks:
        alloc.trim(b, 1)
    rotate(alloc)
    with pytest.raises(NoSpace):
        alloc.allocate(0, -1, 1)  # no whole block is free, though most units are
    assert len(alloc.allocate(0, -1, 60, order=0)) == 60


def test_random_churn_keeps_the_books(alloc: BlockAllocator) -> None:
    rng = random.Random(7)
    held: list[int] = []
    node = next(iter(alloc.datanodes.values()))
    for _ in range(2000):
        if rng.random() < 0.1:
            rotate(alloc)
        if held and rng.random() < 0.45:
            alloc.free([held.pop(rng.randrange(len(held)))])
            continue
        try:
            if rng.random() < 0.3:
                [block] = alloc.allocate(0, -1, 1)
                held.append(alloc.trim(block, rng.randrange(1, BLOCK + 1)))
            else:
                held.extend(alloc.allocate(0, -1, 1, order=rng.randrange(5)))
        except NoSpace:
            pass
        waiting = [c for chunks in node.quarantine.values() for c in chunks]
        assert used(alloc) == sum(1 << unpack(b)[1] for b in held)
        assert node.freeing_units == sum(1 << order for _, order in waiting)
        spans = sorted([(unpack(b)[2], unpack(b)[2] + (1 << unpack(b)[1])) for b in held] +
                       [(unit, unit + (1 << order)) for unit, order in waiting])
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no chunk given twice,
        # and none handed out again before its region's key changed
    alloc.free(held)
    rotate(alloc)
    assert used(alloc) == 0 and not any(node.free[:4])  # every fragment merged back


def test_a_freed_chunk_waits_for_its_regions_key_to_change(alloc: BlockAllocator) -> None:
    node = next(iter(alloc.datanodes.values()))
    blocks = alloc.allocate(0, -1, 4)
    first = unpack(blocks[0])[2]
    assert node.key_of(first) == 11 and node.key_of(unpack(blocks[3])[2]) == 22
    alloc.free(blocks[:1])
    assert node.rotations() == [(0, 11)]  # the heartbeat reply asks for region 0's key
    with pytest.raises(NoSpace, match="come back"):
        alloc.allocate(0, -1, 1)  # the freed block waits: old locations still hold key 11
    node.rotated(0, 11)  # a report of the key it had changes nothing
    node.rotated(0, 12)  # the new key: handed out from now on, but 11 still works
    assert node.key_of(first) == 12 and node.rotations() == []
    alloc.free(blocks[1:2])  # freed while 12 may be out: waits for the next change
    node.retired(0, 99)  # not the old key: nothing happens
    with pytest.raises(NoSpace):
        alloc.allocate(0, -1, 1)
    node.retired(0, 11)
    assert unpack(alloc.allocate(0, -1, 1)[0])[2] == first
    with pytest.raises(NoSpace):
        alloc.allocate(0, -1, 1)
    assert node.rotations() == [(0, 12)] and node.freeing_units == 16
    node.die()
    assert node.freeing_units == 0
