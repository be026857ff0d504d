"""A shuffle through crailpy multifiles: M writer processes, R reader processes.

Each writer (a "map task") produces records and appends one part to each of
the R multifiles (one per reduce partition); each reader (a "reduce task")
streams its multifile and checks that it got every record meant for it. The
parent compares every reader's count and checksum with what it expects.

    python examples/shuffle_job.py --namenode 127.0.0.1:9060 --writers 4 --readers 4
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import struct
import sys
import time

import crailpy

RECORD = struct.Struct("<QQ")  # key, value


def records(writer: int, count: int):
    for i in range(count):
        key = (writer * 1_000_003 + i * 7919) % (1 << 40)
        yield key, key ^ 0x5DEECE66D


def partition_of(key: int, partitions: int) -> int:
    return key % partitions


def expected(writers: int, readers: int, count: int) -> list[tuple[int, int]]:
    """(records, xor of sha256 prefixes) per partition, so that order does not matter."""
    out = [[0, 0] for _ in range(readers)]
    for w in range(writers):
        for key, value in records(w, count):
            p = partition_of(key, readers)
            out[p][0] += 1
            out[p][1] ^= int.from_bytes(hashlib.sha256(RECORD.pack(key, value)).digest()[:8], "little")
    return [tuple(x) for x in out]


def writer(address: str, base: str, w: int, readers: int, count: int) -> None:
    buffers = [bytearray() for _ in range(readers)]
    for key, value in records(w, count):
        buffers[partition_of(key, readers)] += RECORD.pack(key, value)
    with crailpy.connect(address) as store:
        for p, buf in enumerate(buffers):
            with store.append_part(f"{base}/part-{p}") as f:
                f.write(buf)


def reader(address: str, base: str, p: int, results) -> None:
    with crailpy.connect(address) as store:
        data = store.open_multifile(f"{base}/part-{p}").read()
    digest = 0
    for i in range(0, len(data), RECORD.size):
        digest ^= int.from_bytes(hashlib.sha256(data[i : i + RECORD.size]).digest()[:8], "little")
    results.put((p, len(data) // RECORD.size, digest))


def run(address: str, writers: int, readers: int, count: int) -> bool:
    base = "/jobs/shuffle"
    ctx = mp.get_context("spawn")
    with crailpy.connect(address) as store:
        if store.exists(base):
            store.delete(base, recursive=True)
        store.mkdir(base, parents=True)
        for p in range(readers):
            store.create_multifile(f"{base}/part-{p}")
    start = time.perf_counter()
    procs = [ctx.Process(target=writer, args=(address, base, w, readers, count)) for w in range(writers)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    if any(proc.exitcode for proc in procs):
        print("a writer failed", file=sys.stderr)
        return False
    results = ctx.Queue()
    procs = [ctx.Process(target=reader, args=(address, base, p, results)) for p in range(readers)]
    for proc in procs:
        proc.start()
    got = dict((p, (n, d)) for p, n, d in (results.get(timeout=120) for _ in procs))
    for proc in procs:
        proc.join()
    seconds = time.perf_counter() - start
    want = expected(writers, readers, count)
    ok = all(got.get(p) == want[p] for p in range(readers))
    total = writers * count * RECORD.size
    print(f"shuffle {writers} writers x {readers} readers: {writers * count} records, "
          f"{total / 1e6:.1f} MB in {seconds:.2f} s: {'OK, every record arrived' if ok else 'MISMATCH'}")
    with crailpy.connect(address) as store:
        store.delete(base, recursive=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namenode", default=None, help="host:port (default: configured)")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--records", type=int, default=50_000, help="records per writer")
    args = parser.parse_args()
    address = args.namenode or crailpy.config.load().namenode.address
    sys.exit(0 if run(address, args.writers, args.readers, args.records) else 1)


if __name__ == "__main__":
    main()
