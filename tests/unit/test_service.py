"""The namenode service alone: typed requests in, typed replies out, no sockets."""

from __future__ import annotations

import pytest

from crailpy import errors
from crailpy.protocol import messages as m
from crailpy.protocol.messages import EXACT, EXIST_OK, OVERWRITE, PARENTS, NodeType
from crailpy.namenode.blocks import UNIT
from crailpy.namenode.service import NamenodeService

BS = 4096
DIR, FILE, MULTI, TABLE = NodeType.DIRECTORY, NodeType.FILE, NodeType.MULTIFILE, NodeType.TABLE


def registration(storage_class: int, location_class: int, transports: int, port: int,
                 capacity: int, host: str, region_size: int = 2 * BS) -> m.Register:
    """A datanode's REGISTER, with a key for each of its key regions."""
    keys = tuple(m.RegionKey(r, 100 + r) for r in range(-(-capacity // region_size)))
    return m.Register(storage_class, location_class, transports, port, capacity, m.NO_RDMA, m.NO_NVMF,
                      region_size, keys, host)


def rotate_keys(nn: NamenodeService) -> None:
    """What datanodes do when heartbeat replies ask: change the keys of regions with freed
    blocks, and report them; the namenode can then reuse those blocks."""
    for d in [d for d in nn.alloc.datanodes.values() if d.alive]:
        asked = nn.heartbeat(m.Heartbeat(d.id, d.key, (), ()), 0).rotate
        nn.heartbeat(m.Heartbeat(d.id, d.key, tuple((r, k + 1) for r, k in asked), ()), 0)
        nn.heartbeat(m.Heartbeat(d.id, d.key, (), asked), 0)


@pytest.fixture
def nn() -> NamenodeService:
    service = NamenodeService(BS, ["dram", "flash"], dead_after=5.0, heartbeat_interval=1.0)
    service.register(registration(0, 0, 1, 5000, 4 * BS, "dram-a"), 0)
    service.register(registration(0, 0, 1, 5001, 4 * BS, "dram-b"), 0)
    service.register(registration(1, 0, 1, 5002, 16 * BS, "flash-a"), 0)
    return service


def mkdir(nn: NamenodeService, path: str, flags: int = 0, cls: int = -1, kind=DIR) -> m.Created:
    return nn.create(m.Create(kind, cls, -1, flags, 0, path), 1)


def write(nn: NamenodeService, path: str, size: int, session: int = 1, flags: int = 0,
          cls: int = -1) -> m.NodeInfo:
    created = nn.create(m.Create(FILE, cls, -1, flags, 0, path), session)
    blocks = -(-size // BS)
    while blocks > 0:  # as a writer does: the namenode may give fewer than asked
        blocks -= len(nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, blocks, 0),
                                      session).blocks)
    return nn.commit(m.Commit(created.info.id, created.token, size), session)


def used(nn: NamenodeService) -> dict[str, int]:
    """Bytes in use per class once the datanodes have changed the keys of freed blocks."""
    rotate_keys(nn)
    return {c.name: c.used for c in nn.statfs(m.StatFs(), 0).classes}


def names(nn: NamenodeService, path: str) -> list[str]:
    return [e.name for e in nn.list_dir(m.ListDir(0, 1000, path), 0).entries]


def test_paths_keep_real_names_at_any_depth(nn: NamenodeService) -> None:
    deep = "/" + "/".join(f"d{i}" for i in range(40))
    mkdir(nn, deep, PARENTS)
    write(nn, deep + "/naïve 文件.bin", 10)
    assert names(nn, deep) == ["naïve 文件.bin"]
    assert nn.lookup(m.Lookup(0, deep + "//naïve 文件.bin"), 0).info.size == 10


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/a/./b", "/a\0b", "/" + "x" * 256])
def test_bad_paths_are_refused(nn: NamenodeService, bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        mkdir(nn, bad)


def test_missing_parent_existing_node_and_wrong_types(nn: NamenodeService) -> None:
    with pytest.raises(errors.NotFound):
        mkdir(nn, "/a/b")
    mkdir(nn, "/a")
    with pytest.raises(errors.Exists):
        mkdir(nn, "/a")
    assert mkdir(nn, "/a", EXIST_OK).info.type == DIR
    write(nn, "/a/f", 1)
    with pytest.raises(errors.NotADirectory):
        mkdir(nn, "/a/f/g")
    with pytest.raises(errors.Exists):
        write(nn, "/a/f", 1)


def test_file_is_invisible_until_commit_and_second_writer_is_refused(nn: NamenodeService) -> None:
    created = nn.create(m.Create(FILE, -1, -1, 0, 0, "/f"), 1)
    with pytest.raises(errors.NotFound):
        nn.lookup(m.Lookup(0, "/f"), 0)
    assert names(nn, "/") == []
    with pytest.raises(errors.Busy, match="another writer"):
        nn.create(m.Create(FILE, -1, -1, OVERWRITE, 0, "/f"), 2)
    with pytest.raises(errors.Busy):
        nn.commit(m.Commit(created.info.id, created.token + 1, 0), 2)
    nn.commit(m.Commit(created.info.id, created.token, 0), 1)
    assert nn.lookup(m.Lookup(0, "/f"), 0).info.committed == 1


def test_dead_writer_session_leaves_nothing(nn: NamenodeService) -> None:
    before = used(nn)
    created = nn.create(m.Create(FILE, -1, -1, 0, 0, "/f"), 7)
    nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 3, 0), 7)
    assert used(nn)["dram"] == 3 * BS
    nn.end_session(7)
    assert used(nn) == before
    with pytest.raises(errors.NotFound):
        nn.lookup(m.Lookup(0, "/f"), 0)
    write(nn, "/f", 5)  # the name is free again


def test_commit_frees_unused_trailing_blocks(nn: NamenodeService) -> None:
    created = nn.create(m.Create(FILE, -1, -1, 0, 0, "/f"), 1)
    nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 6, 0), 1)
    nn.commit(m.Commit(created.info.id, created.token, BS + 1), 1)
    assert sum(used(nn).values()) == 2 * BS
    with pytest.raises(errors.InvalidArgument):
        c2 = nn.create(m.Create(FILE, -1, -1, 0, 0, "/g"), 1)
        nn.commit(m.Commit(c2.info.id, c2.token, 1), 1)  # no block allocated for 1 byte


def test_storage_class_inherited_and_falls_back_to_next_class(nn: NamenodeService) -> None:
    mkdir(nn, "/cold", cls=1)
    assert write(nn, "/cold/f", BS).storage_class == 1
    assert used(nn) == {"dram": 0, "flash": BS}
    write(nn, "/big", 10 * BS)  # 8 dram blocks exist in all: the rest must go to flash
    located = nn.lookup(m.Lookup(64, "/big"), 0)
    classes = {d.id: d.storage_class for d in located.datanodes}
    assert [classes[b.datanode] for b in located.blocks] == [0] * 8 + [1] * 2
    with pytest.raises(errors.NoSpace):
        write(nn, "/cold/too-big", 20 * BS)


def test_blocks_spread_over_datanodes_and_freed_blocks_are_reused(nn: NamenodeService) -> None:
    write(nn, "/f", 4 * BS)
    located = nn.lookup(m.Lookup(64, "/f"), 0)
    assert len({b.datanode for b in located.blocks}) == 2
    first = {(b.datanode, b.offset) for b in located.blocks}
    nn.delete(m.Delete(0, "/f"), 0)
    assert used(nn)["dram"] == 0
    write(nn, "/g", 4 * BS)
    again = {(b.datanode, b.offset) for b in nn.lookup(m.Lookup(64, "/g"), 0).blocks}
    assert again == first


def test_location_class_is_preferred(nn: NamenodeService) -> None:
    nn.register(registration(0, 3, 1, 6000, 8 * BS, "rack3"), 0)
    created = nn.create(m.Create(FILE, -1, 3, 0, 0, "/near"), 1)
    reply = nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 5, 0), 1)
    assert {d.host for d in reply.datanodes} == {"rack3"}


def test_delete_recursive_and_not_empty(nn: NamenodeService) -> None:
    mkdir(nn, "/a/b/c", PARENTS)
    write(nn, "/a/b/c/f", 3 * BS)
    with pytest.raises(errors.DirectoryNotEmpty):
        nn.delete(m.Delete(0, "/a"), 0)
    nn.delete(m.Delete(1, "/a"), 0)
    assert names(nn, "/") == [] and sum(used(nn).values()) == 0
    with pytest.raises(errors.InvalidArgument):
        nn.delete(m.Delete(1, "/"), 0)


def test_writer_whose_directory_was_deleted_cannot_commit(nn: NamenodeService) -> None:
    mkdir(nn, "/d")
    created = nn.create(m.Create(FILE, -1, -1, 0, 0, "/d/f"), 1)
    nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 1, 0), 1)
    nn.delete(m.Delete(1, "/d"), 0)
    with pytest.raises(errors.NotFound, match="deleted"):
        nn.commit(m.Commit(created.info.id, created.token, 10), 1)
    assert sum(used(nn).values()) == 0


def test_rename_is_atomic_and_checked(nn: NamenodeService) -> None:
    mkdir(nn, "/a/b", PARENTS)
    write(nn, "/a/b/f", 10)
    nn.rename(m.Rename("/a/b", "/c"), 0)
    assert names(nn, "/") == ["a", "c"] and names(nn, "/c") == ["f"]
    write(nn, "/g", 1)
    with pytest.raises(errors.Exists):
        nn.rename(m.Rename("/g", "/c/f"), 0)
    with pytest.raises(errors.InvalidArgument, match="into itself"):
        nn.rename(m.Rename("/a", "/a/x"), 0)
    with pytest.raises(errors.NotFound):
        nn.rename(m.Rename("/nope", "/x"), 0)


def test_multifile_parts_commit_independently(nn: NamenodeService) -> None:
    mkdir(nn, "/shuffle", kind=MULTI)
    writers = [nn.create_part(m.CreatePart(-1, 0, 0, "/shuffle"), s) for s in (1, 2, 3)]
    for i in (2, 0):  # commit order is stream order; part 1 never commits
        w = writers[i]
        nn.alloc_blocks(m.AllocBlocks(w.info.id, w.token, 1, 0), i + 1)
        nn.commit(m.Commit(w.info.id, w.token, 100 + i), i + 1)
    located = nn.lookup(m.Lookup(0, "/shuffle"), 0)
    parts = located.parts
    assert [p.size for p in parts] == [102, 100] and located.info.size == 202
    blocks = nn.get_blocks(m.GetBlocks(parts[0].id, 0, 10, 0), 0)
    assert len(blocks.blocks) == 1
    with pytest.raises(errors.WrongType):
        nn.create_part(m.CreatePart(-1, 0, 0, "/"), 1)
    nn.alloc_blocks(m.AllocBlocks(writers[1].info.id, writers[1].token, 1, 0), 2)
    nn.delete(m.Delete(1, "/shuffle"), 0)
    assert used(nn)["dram"] == 1 * BS  # only the uncommitted part still holds a block
    nn.end_session(2)
    assert used(nn)["dram"] == 0


def test_table_last_put_wins(nn: NamenodeService) -> None:
    mkdir(nn, "/kv", kind=TABLE)
    a = nn.create(m.Create(FILE, -1, -1, 0, 0, "/kv/k"), 1)
    b = nn.create(m.Create(FILE, -1, -1, 0, 0, "/kv/k"), 2)  # concurrent puts are allowed
    for w, size, s in ((b, 20, 2), (a, 10, 1)):
        nn.alloc_blocks(m.AllocBlocks(w.info.id, w.token, 1, 0), s)
        nn.commit(m.Commit(w.info.id, w.token, size), s)
    assert nn.lookup(m.Lookup(0, "/kv/k"), 0).info.size == 10
    assert used(nn)["dram"] == BS  # the replaced value's block was freed
    with pytest.raises(errors.WrongType):
        mkdir(nn, "/kv/dir")


def test_list_pages(nn: NamenodeService) -> None:
    mkdir(nn, "/many")
    for i in range(25):
        mkdir(nn, f"/many/d{i:02}")
    page = nn.list_dir(m.ListDir(20, 10, "/many"), 0)
    assert [e.name for e in page.entries] == [f"d{i}" for i in range(20, 25)] and not page.more
    assert nn.list_dir(m.ListDir(0, 10, "/many"), 0).more


def test_dead_datanode_marks_its_blocks_lost_and_leaves_capacity(nn: NamenodeService) -> None:
    write(nn, "/f", 2 * BS)
    for d in nn.alloc.datanodes.values():
        d.last_heartbeat -= 100
    dram_a, dram_b, flash = nn.alloc.datanodes.values()
    flash.last_heartbeat += 100
    assert sorted(nn.expire_datanodes()) == sorted([dram_a.id, dram_b.id])
    located = nn.lookup(m.Lookup(64, "/f"), 0)
    assert all(not d.alive for d in located.datanodes)
    assert {c.name: c.capacity for c in nn.statfs(m.StatFs(), 0).classes}["dram"] == 0
    with pytest.raises(errors.Stale):
        nn.heartbeat(m.Heartbeat(dram_a.id, dram_a.key, (), ()), 0)
    assert write(nn, "/g", BS).storage_class == 0  # lands on flash, the class with room
    assert nn.lookup(m.Lookup(64, "/g"), 0).datanodes[0].storage_class == 1


def test_register_checks_class_and_capacity(nn: NamenodeService) -> None:
    with pytest.raises(errors.InvalidArgument):
        nn.register(registration(7, 0, 1, 1, 10 * BS, "h"), 0)
    with pytest.raises(errors.InvalidArgument):
        nn.register(registration(0, 0, 1, 1, BS - 1, "h"), 0)


def test_register_checks_the_nvmf_target(nn: NamenodeService) -> None:
    nvmf, target = m.Transport.NVMF, m.NvmfTarget(4420, "nqn.2026-11.io.crailpy:x")
    for transports, given in ((nvmf, m.NO_NVMF), (nvmf, target._replace(nqn="")),
                              (nvmf, target._replace(port=0)), (m.Transport.TCP, target),
                              (m.Transport.TCP, target._replace(port=0))):
        with pytest.raises(errors.InvalidArgument, match="NVMe/TCP"):
            nn.register(registration(1, 0, transports, 1, 4 * BS, "h")._replace(nvmf=given), 0)
    node = nn.register(registration(1, 0, nvmf, 1, 4 * BS, "h")._replace(nvmf=target), 0)
    [info] = [d for d in nn.alloc.datanodes.values() if d.id == node.datanode]
    assert info.info().nvmf == target and info.info().transports == nvmf


def test_parts_are_paged(nn: NamenodeService, monkeypatch: pytest.MonkeyPatch) -> None:
    import crailpy.namenode.service as service_module

    monkeypatch.setattr(service_module, "MAX_PARTS_PER_REPLY", 3)
    mkdir(nn, "/m", kind=MULTI)
    for i in range(7):
        w = nn.create_part(m.CreatePart(-1, 0, 0, "/m"), 1)
        nn.commit(m.Commit(w.info.id, w.token, 0), 1)
    located = nn.lookup(m.Lookup(0, "/m"), 0)
    assert len(located.parts) == 3
    rest = nn.list_parts(m.ListParts(located.info.id, 3, 100), 0)
    assert rest.first == 3 and len(rest.parts) == 3
    assert len(nn.list_parts(m.ListParts(located.info.id, 6, 100), 0).parts) == 1


def test_create_reserves_blocks_and_fails_cleanly(nn: NamenodeService) -> None:
    created = nn.create(m.Create(FILE, -1, -1, 0, 3 * BS - 1, "/f"), 1)
    assert len(created.blocks) == 3 and len({b.datanode for b in created.blocks}) == 2
    assert used(nn)["dram"] == 3 * BS
    nn.commit(m.Commit(created.info.id, created.token, 10), 1)
    assert used(nn)["dram"] == BS
    partial = nn.create(m.Create(FILE, -1, -1, 0, 100 * BS, "/g"), 1)
    assert len(partial.blocks) == 23  # as many as are free
    nn.abort(m.Abort(partial.info.id, partial.token), 1)
    assert "g" not in names(nn, "/") and len(nn.open_files) == 0
    rotate_keys(nn)
    write(nn, "/g", 1)  # nothing was left reserved


def test_parents_are_not_made_inside_tables_nor_with_bad_classes(nn: NamenodeService) -> None:
    mkdir(nn, "/kv", kind=TABLE)
    with pytest.raises(errors.WrongType):
        mkdir(nn, "/kv/a/b", PARENTS)
    with pytest.raises(errors.InvalidArgument):
        nn.create(m.Create(FILE, 9, -1, PARENTS, 0, "/x/y/z"), 1)
    assert names(nn, "/") == ["kv"] and names(nn, "/kv") == []


def test_dead_datanode_is_forgotten_once_no_file_names_it(nn: NamenodeService) -> None:
    write(nn, "/f", BS)
    holder = nn.lookup(m.Lookup(1, "/f"), 0).blocks[0].datanode
    nn.alloc.datanodes[holder].last_heartbeat -= 100
    nn.expire_datanodes()
    assert holder in nn.alloc.datanodes  # /f still names its lost block
    nn.delete(m.Delete(0, "/f"), 0)
    assert holder not in nn.alloc.datanodes
    assert len(nn.statfs(m.StatFs(), 0).datanodes) == 2


def test_write_tokens_are_positive_signed_64_bit(nn: NamenodeService) -> None:
    for i in range(50):
        token = nn.create(m.Create(FILE, -1, -1, 0, 0, f"/t{i}"), 1).token
        assert 0 < token < 2**63


def test_heartbeat_needs_the_key_of_the_registration(nn: NamenodeService) -> None:
    reply = nn.register(registration(0, 0, 1, 7000, 4 * BS, "h"), 0)
    nn.heartbeat(m.Heartbeat(reply.datanode, reply.key, (), ()), 0)
    with pytest.raises(errors.Stale):
        nn.heartbeat(m.Heartbeat(reply.datanode, reply.key ^ 1, (), ()), 0)


def test_allocation_gives_what_there_is(nn: NamenodeService) -> None:
    created = nn.create(m.Create(FILE, -1, -1, 0, 1000 * BS, "/f"), 1)
    assert len(created.blocks) == 24  # all there is: the reserve is a hint
    more = nn.create(m.Create(FILE, -1, -1, 0, BS, "/g"), 1)
    assert more.blocks == ()
    with pytest.raises(errors.NoSpace):
        nn.alloc_blocks(m.AllocBlocks(more.info.id, more.token, 8, 0), 1)
    nn.abort(m.Abort(created.info.id, created.token), 1)
    rotate_keys(nn)
    assert len(nn.alloc_blocks(m.AllocBlocks(more.info.id, more.token, 30, 0), 1).blocks) == 24


def test_a_known_end_gets_a_tail_chunk(nn: NamenodeService) -> None:
    big = NamenodeService(64 * UNIT, ["dram"], dead_after=5.0, heartbeat_interval=1.0)
    big.register(registration(0, 0, 1, 1, 8 * 64 * UNIT, "h", 64 * UNIT), 0)
    created = big.create(m.Create(FILE, -1, -1, 0, 0, "/f"), 1)
    reply = big.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 2, 3 * UNIT), 1)
    assert len(reply.blocks) == 3
    assert sum(n.used_units for n in big.alloc.datanodes.values()) == 2 * 64 + 4
    with pytest.raises(errors.InvalidArgument, match="at most"):
        big.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 1, 0), 1)
    with pytest.raises(errors.InvalidArgument, match="over"):
        big.commit(m.Commit(created.info.id, created.token, 2 * 64 * UNIT + 3 * UNIT + 1), 1)
    big.commit(m.Commit(created.info.id, created.token, 2 * 64 * UNIT + 3 * UNIT), 1)
    with pytest.raises(errors.InvalidArgument):
        other = big.create(m.Create(FILE, -1, -1, 0, 0, "/g"), 1)
        big.alloc_blocks(m.AllocBlocks(other.info.id, other.token, 0, 0), 1)


def test_parents_never_make_a_directory_of_a_name_being_written(nn: NamenodeService) -> None:
    mkdir(nn, "/a")
    created = nn.create(m.Create(FILE, -1, -1, 0, 0, "/a/f"), 1)
    with pytest.raises(errors.Busy):
        mkdir(nn, "/a/f/g", PARENTS)
    nn.commit(m.Commit(created.info.id, created.token, 0), 1)
    assert [e.name for e in nn.list_dir(m.ListDir(0, 10, "/a"), 0).entries] == ["f"]


def test_exact_small_file_gets_its_space_or_no_space(nn: NamenodeService) -> None:
    write(nn, "/fill", 24 * BS)  # every block of every class
    with pytest.raises(errors.NoSpace):
        nn.create(m.Create(FILE, -1, -1, EXACT, 100, "/x"), 1)
    nn.delete(m.Delete(0, "/fill"), 0)
    created = nn.create(m.Create(FILE, -1, -1, EXACT, 2 * BS, "/y"), 1)
    with pytest.raises(errors.InvalidArgument):  # a tail may not move a fixed end
        nn.alloc_blocks(m.AllocBlocks(created.info.id, created.token, 2, 1), 1)


def test_freed_blocks_wait_for_a_new_key_and_live_ones_get_it(nn: NamenodeService) -> None:
    write(nn, "/keep", BS)
    write(nn, "/gone", 23 * BS)  # the rest of dram and flash
    kept = nn.lookup(m.Lookup(1, "/keep"), 0).blocks[0]
    gone = nn.lookup(m.Lookup(64, "/gone"), 0).blocks
    nn.delete(m.Delete(0, "/gone"), 0)
    with pytest.raises(errors.NoSpace):  # old locations of /gone still hold the old keys
        write(nn, "/next", BS)
    nodes = {d.id: d.key for d in nn.alloc.datanodes.values()}

    def beat(d: int, rotated: tuple = (), retired: tuple = ()) -> tuple:
        return nn.heartbeat(m.Heartbeat(d, nodes[d], rotated, retired), 0).rotate

    asked = {d: beat(d) for d in nodes}
    assert all(asked.values())
    for d, regions in asked.items():  # each datanode makes a new key for each region asked
        assert beat(d, tuple((r, k ^ 0xFF) for r, k in regions)) == ()
    with pytest.raises(errors.NoSpace):  # the old keys still work
        write(nn, "/next2", BS)
    assert nn.lookup(m.Lookup(1, "/keep"), 0).blocks[0].key == kept.key ^ 0xFF  # the new one
    for d, regions in asked.items():
        beat(d, (), regions)  # and retires the old ones
    write(nn, "/next3", 23 * BS)
    new = {(b.datanode, b.offset): b.key for b in nn.lookup(m.Lookup(64, "/next3"), 0).blocks}
    for b in gone:  # every block of /gone went to /next3, and under another key
        assert new[(b.datanode, b.offset)] != b.key


def test_register_and_heartbeat_check_the_keys(nn: NamenodeService) -> None:
    good = registration(0, 0, 1, 7000, 4 * BS, "h")
    for bad in (good._replace(region_size=BS + 1), good._replace(region_size=0),
                good._replace(keys=good.keys[:1]), good._replace(keys=good.keys + good.keys[:1]),
                good._replace(keys=(m.RegionKey(0, 0), good.keys[1]))):
        with pytest.raises(errors.InvalidArgument):
            nn.register(bad, 0)
    reply = nn.register(good, 0)
    with pytest.raises(errors.InvalidArgument):
        nn.heartbeat(m.Heartbeat(reply.datanode, reply.key, (m.RegionKey(2, 5),), ()), 0)


# ---- small files held by the namenode (PUT) ----

@pytest.fixture
def inline() -> NamenodeService:
    """A namenode that holds files of up to 100 bytes, 250 bytes in all."""
    service = NamenodeService(BS, ["dram", "flash"], dead_after=5.0, heartbeat_interval=1.0,
                              inline_max=100, inline_capacity=250)
    service.register(registration(0, 0, 1, 5000, 4 * BS, "dram-a"), 0)
    return service


def put(nn: NamenodeService, path: str, data: bytes, flags: int = OVERWRITE) -> m.NodeInfo:
    return nn.put(m.Put(flags, path, data), 1)


def inline_used(nn: NamenodeService) -> int:
    return nn.statfs(m.StatFs(), 0).inline_used


def test_a_put_file_is_held_whole_and_looked_up_with_its_bytes(inline: NamenodeService) -> None:
    info = put(inline, "/a", b"x" * 100)
    assert (info.type, info.size, info.committed, info.storage_class) == (FILE, 100, 1, 0)
    located = inline.lookup(m.Lookup(64, "/a"), 0)
    assert located.data == b"x" * 100 and located.blocks == ()
    assert inline.lookup(m.Lookup(0, "/a"), 0).data == b""  # a stat does not carry them
    assert inline.get_blocks(m.GetBlocks(info.id, 0, 8, 0), 0).blocks == ()
    assert (inline_used(inline), used(inline)) == (100, {"dram": 0, "flash": 0})


def test_put_refuses_what_it_cannot_hold_as_no_space(inline: NamenodeService) -> None:
    with pytest.raises(errors.NoSpace, match="at most 100 bytes"):
        put(inline, "/big", b"x" * 101)
    mkdir(inline, "/cold", cls=1)
    with pytest.raises(errors.NoSpace, match="storage class dram only"):
        put(inline, "/cold/f", b"x")
    put(inline, "/a", b"a" * 100)
    put(inline, "/b", b"b" * 100)
    with pytest.raises(errors.NoSpace, match="250 bytes for small files"):
        put(inline, "/c", b"c" * 51)
    put(inline, "/b", b"B" * 100)  # a replacement counts what the old one gives back
    put(inline, "/c", b"c" * 50)
    assert inline_used(inline) == 250
    assert not any(n.endswith("big") or n == "f" for n in names(inline, "/") + names(inline, "/cold"))


def test_put_replaces_as_create_does(inline: NamenodeService) -> None:
    put(inline, "/a", b"1")
    with pytest.raises(errors.Exists):
        put(inline, "/a", b"2", flags=0)  # not without OVERWRITE
    mkdir(inline, "/t", kind=TABLE)
    put(inline, "/t/k", b"1", flags=0)
    put(inline, "/t/k", b"22", flags=0)  # in a table the last put wins
    assert inline.lookup(m.Lookup(1, "/t/k"), 0).data == b"22"
    mkdir(inline, "/d")
    with pytest.raises(errors.Exists):
        put(inline, "/d", b"x")  # never over a directory
    with pytest.raises(errors.NotFound):
        put(inline, "/missing/f", b"x", flags=0)
    put(inline, "/missing/f", b"x", flags=PARENTS)
    mkdir(inline, "/m", kind=MULTI)
    with pytest.raises(errors.WrongType):
        put(inline, "/m/p", b"x")
    writing = inline.create(m.Create(FILE, -1, -1, 0, 0, "/w"), 2)
    with pytest.raises(errors.Busy):
        put(inline, "/w", b"x")  # a writer holds the name
    inline.abort(m.Abort(writing.info.id, writing.token), 2)


def test_bytes_held_are_given_back_by_delete_and_replacement(inline: NamenodeService) -> None:
    put(inline, "/a", b"x" * 60)
    write(inline, "/a", 3 * BS, flags=OVERWRITE)  # a written file replaces a put one
    assert inline_used(inline) == 0
    put(inline, "/a", b"y" * 70)  # and a put one a written file: its blocks are freed
    assert (inline_used(inline), used(inline)["dram"]) == (70, 0)
    mkdir(inline, "/d")
    put(inline, "/d/b", b"z" * 80)
    inline.rename(m.Rename("/d/b", "/c"), 1)
    assert inline.lookup(m.Lookup(1, "/c"), 0).data == b"z" * 80
    inline.delete(m.Delete(0, "/a"), 1)
    inline.delete(m.Delete(0, "/c"), 1)
    assert inline_used(inline) == 0


def test_inline_max_is_at_most_a_block() -> None:
    with pytest.raises(errors.InvalidArgument, match="inline_max"):
        NamenodeService(BS, ["dram"], dead_after=5.0, heartbeat_interval=1.0, inline_max=BS + 1)
