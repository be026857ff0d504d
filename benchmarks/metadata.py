"""Metadata: create+close, lookup, list and delete operations per second at the namenode,
with one request in flight and with 64 pipelined on one connection."""

from __future__ import annotations

import time
from typing import Callable

from benchmarks import harness
from crailpy.protocol import messages as m


def _rate(count: int, fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return round(count / (time.perf_counter() - t))


def run(crail: harness.Crail, count: int) -> list[dict]:
    import crailpy

    rows = []
    with crailpy.connect(crail.address) as store:
        store.mkdir("/meta/listed", parents=True)
        for i in range(16):
            store.mkdir(f"/meta/listed/d{i}")
        for inflight in (1, 64):
            base = f"/meta/q{inflight}"
            store.mkdir(base)
            paths = [f"{base}/f{i}" for i in range(count)]
            if inflight == 1:
                rates = {
                    "create+close": _rate(count, lambda: [store.create(p, size_hint=0).close()
                                                          for p in paths]),
                    "lookup": _rate(count, lambda: [store.stat(p) for p in paths]),
                    "list (16 entries)": _rate(count, lambda: [store.list("/meta/listed")
                                                               for _ in paths]),
                    "delete": _rate(count, lambda: [store.delete(p) for p in paths]),
                }
            else:
                listing = m.ListDir(0, 1000, "/meta/listed")
                rates = {
                    "create+close": _rate(count, lambda: store.put_many(
                        dict.fromkeys(paths, b""), inflight)),
                    "lookup": _rate(count, lambda: store.stat_many(paths, inflight)),
                    "list (16 entries)": _rate(count, lambda: store.pipeline(
                        (listing for _ in paths), inflight)),
                    "delete": _rate(count, lambda: store.delete_many(paths, inflight=inflight)),
                }
            for op, rate in rates.items():
                rows.append({"op": op, "in flight": inflight, "ops/s": rate})
    return rows
