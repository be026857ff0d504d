"""`crailpy iobench`: Crail's iobench tests over the Python API.

A data set of `count` files of `size` bytes under one directory: `write`
creates it, `readSequential` reads it back in order, `readRandom` in a random
order, `createFile` creates and closes empty files, `getFile` looks files up.
Every operation is timed alone, so each test reports latency percentiles as
well as throughput.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Iterator

from crailpy.client import Store

TESTS = ["write", "readSequential", "readRandom", "createFile", "getFile", "all"]


@dataclass
class Result:
    test: str
    ops: int
    bytes: int
    seconds: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def render(self) -> str:
        return (f"{self.test:<15} ops {self.ops:>7}  bytes {self.bytes:>12}  "
                f"time {self.seconds:8.3f} s  {self.ops / self.seconds:>10.0f} ops/s  "
                f"{self.mb_per_s:>9.1f} MB/s ({self.mb_per_s * 8 / 1000:.2f} Gbit/s)  "
                f"latency us p50 {self.p50_us:.0f} p90 {self.p90_us:.0f} "
                f"p99 {self.p99_us:.0f} max {self.max_us:.0f}")

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "mb_per_s": round(self.mb_per_s, 1)})


def _result(test: str, latencies: list[float], nbytes: int, seconds: float) -> Result:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6

    return Result(test, len(lat), nbytes, seconds, pct(0.5), pct(0.9), pct(0.99), lat[-1] * 1e6)


def _timed(test: str, ops: list, each_bytes: int) -> Result:
    latencies = []
    start = time.perf_counter()
    for op in ops:
        t = time.perf_counter()
        op()
        latencies.append(time.perf_counter() - t)
    return _result(test, latencies, each_bytes * len(ops), time.perf_counter() - start)


def run(store: Store, test: str, size: int, count: int, directory: str,
        storage_class: str | None) -> Iterator[Result]:
    names = [f"{directory}/f{i}" for i in range(count)]
    buf = bytearray(random.randbytes(size))
    tests = TESTS[:-1] if test == "all" else [test]
    if test != "all" and test.startswith("read") and not store.exists(names[-1]):
        raise FileNotFoundError(f"no data set in {directory}: run `crailpy iobench -t write` first")

    def write(path: str) -> None:
        with store.create(path, storage_class=storage_class, size_hint=size, exact=True) as f:
            f.write(buf)

    def read(path: str) -> None:
        with store.open(path) as f:
            f.readinto(buf)

    for name in tests:
        if name == "write":
            if store.exists(directory):
                store.delete(directory, recursive=True)
            store.mkdir(directory, parents=True, storage_class=storage_class)
            yield _timed(name, [lambda p=p: write(p) for p in names], size)
        elif name == "readSequential":
            yield _timed(name, [lambda p=p: read(p) for p in names], size)
        elif name == "readRandom":
            yield _timed(name, [lambda p=p: read(p) for p in random.sample(names, len(names))], size)
        elif name == "createFile":
            empty = f"{directory}-empty"
            if store.exists(empty):
                store.delete(empty, recursive=True)
            store.mkdir(empty, parents=True)
            yield _timed(name, [lambda i=i: store.create(f"{empty}/e{i}").close()
                                for i in range(count)], 0)
            store.delete(empty, recursive=True)
        elif name == "getFile":
            yield _timed(name, [lambda p=p: store.stat(p) for p in names], 0)
    if test == "all":
        store.delete(directory, recursive=True)
