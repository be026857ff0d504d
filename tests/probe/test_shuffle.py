"""A shuffle through multifiles between real writer and reader processes.

Four map processes each append one part to each of four multifiles (one per
reduce partition), holding all four parts open at once and interleaving their
records; then four reduce processes each read one multifile with
`open_multifile` and report what they saw. The parent knows every record a
writer produces, so it checks the exact bytes of every part and of the whole
stream, whatever order the parts were committed in.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crailpy.namenode.blocks import UNIT, order_for

from .conftest import ProbeCluster, child_env, wait_for

pytestmark = pytest.mark.probe

WRITERS = 4
PARTITIONS = 4
TIMEOUT = 60

# Shared by the parent and the child processes (they receive it as source text).
RECORDS = r'''
import hashlib

def records(writer, partition):
    """The records map task `writer` emits for reduce `partition`: sizes vary per task."""
    count = 1500 + 400 * writer + 150 * partition
    for i in range(count):
        key = f"w{writer}:p{partition}:r{i:07d}".encode()
        value = hashlib.blake2b(key, digest_size=32).digest() * (1 + (i % 5))
        yield len(key).to_bytes(2, "little") + key + len(value).to_bytes(4, "little") + value

def part_bytes(writer, partition):
    return b"".join(records(writer, partition))
'''

WRITER = RECORDS + r'''
import json, sys
import crailpy
from crailpy.config import Config

address, root, writer = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = crailpy.connect(address, Config().override("client", connect_timeout=2.0, io_timeout=10.0))
parts = [store.append_part(f"{root}/part-{p}") for p in range(4)]
streams = [records(writer, p) for p in range(4)]
sizes = [0] * 4
live = set(range(4))
while live:  # round robin over the open parts: small writes, gathered by the writer
    for p in sorted(live):
        record = next(streams[p], None)
        if record is None:
            live.discard(p)
            continue
        parts[p].write(record)
        sizes[p] += len(record)
for p in sorted(range(4), key=lambda p: (p + writer) % 4):  # commit in a per-writer order
    parts[p].close()
store.close()
print(json.dumps({"writer": writer, "sizes": sizes}))
'''

READER = r'''
import hashlib, json, sys
import crailpy
from crailpy.config import Config

address, path = sys.argv[1], sys.argv[2]
store = crailpy.connect(address, Config().override("client", connect_timeout=2.0, io_timeout=10.0))
reader = store.open_multifile(path)
whole = hashlib.sha256()
total = 0
buf = bytearray(100_000)  # stream it in pieces smaller than a part and not block-aligned
while True:
    n = reader.readinto(buf)
    if not n:
        break
    whole.update(memoryview(buf)[:n])
    total += n
parts = []
for part in store.open_multifile(path).part_readers():
    data = part.read()
    parts.append({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
store.close()
print(json.dumps({"path": path, "size": reader.size, "read": total, "sha256": whole.hexdigest(),
                  "parts": parts}))
'''


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=child_env())


def _collect(procs: list[subprocess.Popen]) -> list[dict]:
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == 0, f"child {proc.args[3:]} failed: {err.decode()}"
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return results


def _expected() -> dict[tuple[int, int], bytes]:
    namespace: dict = {}
    exec(RECORDS, namespace)  # noqa: S102 - our own source, shared with the children
    return {(w, p): namespace["part_bytes"](w, p) for w in range(WRITERS) for p in range(PARTITIONS)}


def test_multifile_shuffle_between_processes(make_cluster) -> None:
    # Small blocks, so that every part spans several blocks and datanodes.
    c: ProbeCluster = make_cluster(("dram", "32MiB"), ("dram", "32MiB"), ("file", "64MiB"),
                                   block_size="64KiB")
    store = c.connect()
    store.mkdir("/shuffle")
    for p in range(PARTITIONS):
        store.create_multifile(f"/shuffle/part-{p}")
    expected = _expected()
    digest = {key: hashlib.sha256(data).hexdigest() for key, data in expected.items()}
    owner = {d: key for key, d in digest.items()}
    assert len(owner) == len(expected)  # every part is distinguishable by its bytes

    written = _collect([_spawn(WRITER, c.address, "/shuffle", str(w)) for w in range(WRITERS)])
    for report in written:
        w = report["writer"]
        assert report["sizes"] == [len(expected[(w, p)]) for p in range(PARTITIONS)]

    readers = _collect([_spawn(READER, c.address, f"/shuffle/part-{p}") for p in range(PARTITIONS)])
    for p, report in enumerate(readers):
        assert report["path"] == f"/shuffle/part-{p}"
        parts = report["parts"]
        assert len(parts) == WRITERS, f"partition {p} saw {len(parts)} parts"
        keys = [owner.get(part["sha256"]) for part in parts]
        assert sorted(keys) == [(w, p) for w in range(WRITERS)], f"partition {p}: {keys}"
        assert [part["size"] for part in parts] == [len(expected[k]) for k in keys]
        stream = b"".join(expected[k] for k in keys)  # in the order the parts were committed
        assert report["size"] == report["read"] == len(stream)
        assert report["sha256"] == hashlib.sha256(stream).hexdigest()

    # Every byte is accounted for on the datanodes, and deleting frees it all.
    block = 64 << 10

    def space(nbytes: int) -> int:  # whole blocks, and a power-of-two chunk of 4 KiB units
        whole, rest = divmod(nbytes, block)
        return whole * block + (UNIT << order_for(rest) if rest else 0)
    assert sum(u.used for u in store.usage()[0]) == sum(space(len(d)) for d in expected.values())
    store.delete("/shuffle", recursive=True)
    assert sum(u.used for u in store.usage()[0]) == 0


KILLED_WRITER = r'''
import sys, time
import crailpy
from crailpy.config import Config
address, path, marker = sys.argv[1], sys.argv[2], sys.argv[3]
store = crailpy.connect(address, Config().override("client", connect_timeout=2.0, io_timeout=10.0))
part = store.append_part(path)
part.write(b"half a part " * 100_000)
part.flush()
open(marker, "w").write("ready")
time.sleep(120)
'''


def test_killed_map_task_leaves_no_part(make_cluster, tmp_path: Path) -> None:
    c: ProbeCluster = make_cluster(("dram", "32MiB"), block_size="64KiB")
    store = c.connect()
    store.create_multifile("/mf")
    with store.append_part("/mf") as w:
        w.write(b"committed before")
    baseline = sum(u.used for u in store.usage()[0])

    marker = tmp_path / "ready"
    doomed = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, c.address, "/mf", str(marker)],
                              env=child_env(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: marker.exists() or doomed.poll() is not None, 20, "the writer to write")
        assert doomed.poll() is None, doomed.stderr.read().decode()
        with store.append_part("/mf") as w:  # another writer commits meanwhile
            w.write(b" and after")
        assert sum(u.used for u in store.usage()[0]) > baseline + (1 << 20)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        doomed.stderr.close()

    reader = store.open_multifile("/mf")
    assert [p.size for p in reader.parts] == [16, 10]
    assert reader.read() == b"committed before and after"
    deadline = time.monotonic() + 5
    while sum(u.used for u in store.usage()[0]) != 2 * UNIT:  # two small committed parts
        assert time.monotonic() < deadline, "the killed part's blocks were not freed"
        time.sleep(0.05)
