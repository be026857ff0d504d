"""Faults with real processes: datanodes, writers and the namenode killed; tiers filled.

Every cluster here is the test's own (datanodes with heartbeats every 0.2 s,
declared dead after 1.5 s of silence), because every test breaks it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import crailpy
from crailpy.errors import BlockLost, Busy, NoSpace, Unreachable
from crailpy.namenode.blocks import UNIT
from tests import testbed

from .conftest import (
    ProbeCluster,
    child_env,
    client_config,
    ok,
    one_line_error,
    wait_for,
)

pytestmark = pytest.mark.probe

MiB = 1 << 20


def pattern(seed: int, size: int) -> bytes:
    """Deterministic bytes that differ per seed and per offset (no two blocks alike)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.blake2b(f"{seed}:{counter}".encode(), digest_size=64).digest()
        counter += 1
    return bytes(out[:size])


def write(store: crailpy.Store, path: str, data: bytes, **kwargs) -> None:
    with store.create(path, **kwargs) as w:
        w.write(data)


def used(store: crailpy.Store) -> int:
    return sum(c.used for c in store.usage()[0])


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until a SIGSTOPped process really is stopped (the signal lands asynchronously)."""
    def stopped() -> bool:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    wait_for(stopped, timeout, f"pid {pid} to stop")


def resume(pid: int) -> None:
    """SIGCONT, then until the process runs again and has settled."""
    os.kill(pid, signal.SIGCONT)

    def running() -> bool:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t")
    wait_for(running, 5, f"pid {pid} to run again")
    time.sleep(0.3)  # see test_resumed_namenode_stops_on_sigterm


# ---- (a) a datanode killed ----

def test_killed_datanode_loses_its_blocks_only(make_cluster) -> None:
    # Location classes pin files to a datanode: class 1 is the victim, class 2 the survivor.
    c: ProbeCluster = make_cluster(("dram", "16MiB", "--location-class", "1"),
                                   ("dram", "16MiB", "--location-class", "2"), ("file", "16MiB"))
    store = c.connect()
    files = {f"/one/{i}": pattern(i, 300_000 + i) for i in range(8)}  # one block each
    store.mkdir("/one")
    for i, (path, data) in enumerate(files.items()):
        write(store, path, data, location_class=1 + i % 2)
    spread = pattern(100, 5 * MiB + 3)  # blocks round-robin over both DRAM datanodes
    write(store, "/spread", spread)
    on_flash = pattern(200, 2 * MiB + 5)
    write(store, "/flash", on_flash, storage_class="flash")

    where = {path: {loc.address for loc in store.block_locations(path)} for path in files}
    victim, survivor = [d for d in c.datanodes if d.tier == "dram"]
    lost = sorted(p for p, addrs in where.items() if addrs == {victim.address})
    kept = sorted(p for p, addrs in where.items() if addrs == {survivor.address})
    assert len(lost) == len(kept) == 4, f"location classes should place the files: {where}"
    assert {loc.address for loc in store.block_locations("/spread")} == {victim.address, survivor.address}

    reader = store.open(lost[0])  # opened while the datanode lived
    c.kill(victim)

    # Before the namenode notices, a read through the stale location still fails; it
    # never returns bytes.
    with pytest.raises(OSError) as before:
        reader.read()
    assert isinstance(before.value, (Unreachable, BlockLost)), repr(before.value)
    c.wait_dead(victim, timeout=5.0)

    fresh = c.connect()
    for s in (store, fresh):
        for path in lost + ["/spread"]:
            with pytest.raises(BlockLost) as exc:
                s.get(path)
            assert path in str(exc.value) and victim.address in str(exc.value)
        for path in kept:
            assert s.get(path) == files[path]
        assert s.get("/flash") == on_flash

    # The CLI says so in one line and prints no bytes.
    result = c.fs("cat", lost[0], timeout=30)
    assert "lost" in one_line_error(result) and result.stdout == b""
    df = ok(c.fs("df", timeout=30)).stdout.decode()
    states = {line.split()[1]: line.split()[3] for line in df.splitlines() if line[:1].isdigit()}
    assert states == {d.address: ("dead" if d is victim else "up") for d in c.datanodes}

    # New writes go to the datanodes that are left, and read back.
    for i in range(6):
        data = pattern(300 + i, MiB + i)
        write(fresh, f"/after/{i}", data, parents=True)
        assert victim.address not in {loc.address for loc in fresh.block_locations(f"/after/{i}")}
        assert fresh.get(f"/after/{i}") == data
    # Deleting a file whose blocks are lost works, and its name can be used again.
    fresh.delete(lost[0])
    write(fresh, lost[0], b"again")
    assert fresh.get(lost[0]) == b"again"


def test_read_from_killed_datanode_names_it(make_cluster) -> None:
    c: ProbeCluster = make_cluster(("dram", "16MiB"))
    store = c.connect()
    write(store, "/f", pattern(1, 100_000))  # one block; the connection stays open
    reader = store.open("/f")
    c.kill(c.datanodes[0])
    with pytest.raises(ConnectionError) as exc:
        reader.read()
    assert c.datanodes[0].address in str(exc.value), str(exc.value)


# ---- (b) a writer process killed ----

WRITER = r"""
import sys, time
import crailpy
from crailpy.config import Config
address, path, size, marker = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = crailpy.connect(address, Config().override("client", connect_timeout=2.0, io_timeout=10.0))
w = store.create(path)
chunk = bytes(range(256)) * 4096
written = 0
while written < size:
    written += w.write(chunk[: size - written])
w.flush()  # every byte is on a datanode; the file is not committed
open(marker, "w").write("ready")
time.sleep(120)
"""


def test_killed_writer_leaves_no_file_and_no_blocks(make_cluster, tmp_path: Path) -> None:
    c: ProbeCluster = make_cluster(("dram", "16MiB"), ("dram", "16MiB"))
    store = c.connect()
    store.mkdir("/w")
    write(store, "/w/other", pattern(5, 2 * MiB))  # a neighbour that must survive
    baseline = used(store)

    marker = tmp_path / "ready"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, c.address, "/w/victim", str(5 * MiB),
                               str(marker)], env=child_env(), stdin=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() or writer.poll() is not None, 20, "the writer to write")
        assert writer.poll() is None, writer.stderr.read().decode()

        assert used(store) >= baseline + 5 * MiB  # its blocks are held...
        with pytest.raises(FileNotFoundError):  # ...but the file is not visible
            store.stat("/w/victim")
        assert [s.path for s in store.list("/w")] == ["/w/other"]
        with pytest.raises(Busy):  # and nobody else may create it meanwhile
            store.create("/w/victim")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stderr.close()

    wait_for(lambda: used(store) == baseline, 5, "the killed writer's blocks to be freed")
    with pytest.raises(FileNotFoundError):
        store.stat("/w/victim")
    assert store.get("/w/other") == pattern(5, 2 * MiB)

    other = c.connect()
    data = pattern(6, 3 * MiB + 1)
    write(other, "/w/victim", data)
    assert store.get("/w/victim") == data
    assert used(store) == baseline + 3 * MiB + UNIT  # 3 whole blocks and a 4 KiB chunk


# ---- (c) the namenode killed or hung ----

def test_killed_namenode_fails_calls_fast(make_cluster) -> None:
    c: ProbeCluster = make_cluster(("dram", "16MiB"))
    store = c.connect(connect_timeout=1.0, io_timeout=3.0)
    write(store, "/f", b"before")
    c.kill(c.namenode)

    for call in (lambda: store.stat("/f"), lambda: store.open("/f"), lambda: store.usage(),
                 lambda: store.create("/g"),
                 lambda: crailpy.connect(c.address, client_config(connect_timeout=1.0))):
        start = time.monotonic()
        with pytest.raises(ConnectionError):
            call()
        assert time.monotonic() - start < 2.5

    start = time.monotonic()
    result = c.fs("ls", "/", timeout=30)
    assert time.monotonic() - start < 10
    line = one_line_error(result)
    assert "namenode" in line and c.address in line


def test_killed_namenode_error_names_it(make_cluster) -> None:
    c: ProbeCluster = make_cluster()
    store = c.connect(connect_timeout=1.0, io_timeout=3.0)
    store.stat("/")
    c.kill(c.namenode)
    with pytest.raises(ConnectionError) as exc:
        store.stat("/")
    assert "namenode" in str(exc.value) and c.address in str(exc.value), str(exc.value)


def test_restarted_namenode_gets_every_datanode_back(make_cluster) -> None:
    c: ProbeCluster = make_cluster(("dram", "16MiB"))
    first = c.datanodes[0]
    (second,) = c.add_datanodes(("dram", "16MiB"))

    os.kill(first.pid, signal.SIGSTOP)  # a slow datanode: it comes back after the other one
    try:
        wait_stopped(first.pid)
        c.kill(c.namenode)
        c.restart_namenode()
        store = c.connect()
        wait_for(lambda: [n.address for n in store.usage()[1] if n.alive] == [second.address], 5,
                 "the second datanode to register with the new namenode")
    finally:
        resume(first.pid)

    def both_back() -> bool:
        return sorted(n.address for n in store.usage()[1] if n.alive) == \
            sorted([first.address, second.address])
    deadline = time.monotonic() + 3  # heartbeats every 0.2 s: plenty of time to register
    while not both_back() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert both_back(), f"registered after the restart: {store.usage()[1]}"


def test_hung_namenode_and_datanode_time_out(make_cluster) -> None:
    """A process that stops answering (SIGSTOP) costs io_timeout, not a hang."""
    c: ProbeCluster = make_cluster(("dram", "16MiB"))
    store = c.connect(connect_timeout=1.0, io_timeout=1.0)
    write(store, "/f", pattern(9, 200_000))
    datanode = c.datanodes[0]

    os.kill(datanode.pid, signal.SIGSTOP)
    try:
        wait_stopped(datanode.pid)
        start = time.monotonic()
        with pytest.raises(TimeoutError) as exc:
            store.get("/f")
        assert time.monotonic() - start < 4
        assert "datanode" in str(exc.value)
    finally:
        resume(datanode.pid)

    os.kill(c.namenode.pid, signal.SIGSTOP)
    try:
        wait_stopped(c.namenode.pid)
        start = time.monotonic()
        with pytest.raises(TimeoutError) as exc:
            store.stat("/f")
        assert time.monotonic() - start < 4
        assert "namenode" in str(exc.value) and c.address in str(exc.value)
    finally:
        resume(c.namenode.pid)
    # Once it runs again, the namenode answers new connections.
    assert c.connect().stat("/f").size == 200_000


def test_resumed_namenode_stops_on_sigterm(make_cluster) -> None:
    for attempt in range(20):  # the kernel picks the thread: one attempt misses only sometimes
        c: ProbeCluster = make_cluster()
        for _ in range(16):  # each client connection is one more thread in the namenode
            c.connect()
        pid = c.namenode.pid
        os.kill(pid, signal.SIGSTOP)
        wait_stopped(pid)
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)
        try:
            c.namenode.popen.wait(3)
        except subprocess.TimeoutExpired:
            c.kill(c.namenode)
            pytest.fail(f"attempt {attempt}: the namenode ignored SIGTERM after SIGCONT")
        assert c.namenode.popen.returncode == 0


# ---- (d) tiering ----

def test_tiering_spills_to_flash_then_no_space(make_cluster) -> None:
    c: ProbeCluster = make_cluster(("dram", "4MiB"), ("dram", "4MiB"), ("nvmf", "24MiB"))
    store = c.connect()
    classes = {u.name: u.capacity for u in store.usage()[0]}
    assert classes == {"dram": 8 * MiB, "flash": 24 * MiB}

    big = pattern(1, 12 * MiB)
    with store.create("/big") as w:
        for offset in range(0, len(big), MiB):
            w.write(big[offset : offset + MiB])
    tiers = [loc.storage_class for loc in store.block_locations("/big")]
    assert tiers == ["dram"] * 8 + ["flash"] * 4, tiers  # DRAM first, the rest on flash
    assert store.get("/big") == big
    assert {u.name: u.used for u in store.usage()[0]} == {"dram": 8 * MiB, "flash": 4 * MiB}
    addresses = {loc.address for loc in store.block_locations("/big")}
    assert addresses == {d.address for d in c.datanodes}

    # Fill the rest; the write that finds no room fails with NoSpace, an OSError.
    written = {}
    with pytest.raises(NoSpace) as exc:
        for i in range(40):
            before = used(store)
            data = pattern(10 + i, MiB)
            write(store, f"/fill-{i}", data)
            written[f"/fill-{i}"] = data
    assert isinstance(exc.value, OSError)
    assert "no free block" in str(exc.value)
    failed = f"/fill-{len(written)}"
    assert not store.exists(failed)  # the failed file did not appear...
    assert used(store) == before  # ...and gave back what it had taken
    assert written, "at least some files should fit"
    for path, data in written.items():
        assert [loc.storage_class for loc in store.block_locations(path)] == ["flash"]
        assert store.get(path) == data
    assert store.get("/big") == big

    # The CLI reports it in one line.
    result = c.fs("put", "-", "/more", input=pattern(99, 10 * MiB), timeout=30)
    assert "no free block" in one_line_error(result)

    # Freeing DRAM sends new files to DRAM again, once the keys of its blocks changed.
    store.delete("/big")
    assert sum(u.freeing for u in store.usage()[0]) == 12 * MiB
    wait_for(lambda: not sum(u.freeing for u in store.usage()[0]), 10 * testbed.SLOW,
             "the freed blocks to come back")
    write(store, "/back-to-dram", pattern(2, 2 * MiB))
    assert [loc.storage_class for loc in store.block_locations("/back-to-dram")] == ["dram", "dram"]


def test_every_block_of_capacity_can_be_used(make_cluster) -> None:
    c: ProbeCluster = make_cluster(("dram", "4MiB"), ("file", "8MiB"))  # 12 blocks
    store = c.connect()
    count = 0
    with pytest.raises(NoSpace):
        for i in range(20):
            write(store, f"/f{i}", pattern(i, 2 * MiB))  # two blocks each
            count += 1
    usage = {u.name: (u.used, u.capacity) for u in store.usage()[0]}
    assert count == 6, f"only {count} of 6 two-block files fit; (used, capacity): {usage}"
