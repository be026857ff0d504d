"""Shuffle: M writer and R reader processes exchange `volume` bytes, through crailpy
multifiles (one per reduce partition, one part per writer) and through Redis (one key
per writer and partition)."""

from __future__ import annotations

import time

from benchmarks import harness
from benchmarks.large import _payload


def crail_writer(barrier, address: str, w: int, readers: int, chunk: int) -> tuple[float, float, int]:
    import crailpy

    data = _payload(chunk)
    with crailpy.connect(address) as store:
        barrier.wait()
        t0 = time.perf_counter()
        for r in range(readers):
            with store.append_part(f"/shuffle/p{r}", size_hint=chunk) as f:
                f.write(data)
        return (t0, time.perf_counter(), readers * chunk)


def crail_reader(barrier, address: str, r: int, writers: int, chunk: int) -> tuple[float, float, int]:
    import crailpy

    into = bytearray(writers * chunk)
    with crailpy.connect(address) as store:
        barrier.wait()
        t0 = time.perf_counter()
        got = store.open_multifile(f"/shuffle/p{r}").readinto(into)
        assert got == len(into), (got, len(into))
        return (t0, time.perf_counter(), got)


def redis_writer(barrier, port: int, w: int, readers: int, chunk: int) -> tuple[float, float, int]:
    import redis

    data = bytes(_payload(chunk))
    client = redis.Redis(port=port)
    barrier.wait()
    t0 = time.perf_counter()
    for r in range(readers):
        client.set(f"shuffle:{w}:{r}", data)
    return (t0, time.perf_counter(), readers * chunk)


def redis_reader(barrier, port: int, r: int, writers: int, chunk: int) -> tuple[float, float, int]:
    import redis

    client = redis.Redis(port=port)
    barrier.wait()
    t0 = time.perf_counter()
    got = sum(len(client.get(f"shuffle:{w}:{r}")) for w in range(writers))
    assert got == writers * chunk
    return (t0, time.perf_counter(), got)


def _span(results: list[tuple]) -> float:
    return max(r[1] for r in results) - min(r[0] for r in results)


def run(crail: harness.Crail, redis_port: int, writers: int, readers: int, volume: int) -> dict:
    import crailpy

    chunk = volume // (writers * readers)
    with crailpy.connect(crail.address) as store:
        store.mkdir("/shuffle", exist_ok=True)
        for r in range(readers):
            store.create_multifile(f"/shuffle/p{r}")
    crail_time = _span(harness.run_workers(crail_writer, [(crail.address, w, readers, chunk)
                                                          for w in range(writers)]))
    crail_time += _span(harness.run_workers(crail_reader, [(crail.address, r, writers, chunk)
                                                           for r in range(readers)]))
    redis_time = _span(harness.run_workers(redis_writer, [(redis_port, w, readers, chunk)
                                                          for w in range(writers)]))
    redis_time += _span(harness.run_workers(redis_reader, [(redis_port, r, writers, chunk)
                                                           for r in range(readers)]))
    with crailpy.connect(crail.address) as store:
        store.delete("/shuffle", recursive=True)
    total = chunk * writers * readers
    return {"writers": writers, "readers": readers, "bytes": total,
            "crailpy MB/s": round(total / crail_time / 1e6, 1),
            "redis MB/s": round(total / redis_time / 1e6, 1),
            "vs redis": round(redis_time / crail_time, 2)}
