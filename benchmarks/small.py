"""Small objects: put and get latency of crailpy against redis-py and a raw socket round trip.

One client, one operation at a time, so p50 and p99 are latencies and ops/s
is their inverse. The operations of all systems take turns, sample by sample. The raw-socket anchor is the least any request/reply store
can cost in Python: the client sends a 5-byte request (and the value, for a
put) and the server, another process, answers with the value (or one byte).
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Callable

from benchmarks import harness

_REQ = struct.Struct("<cI")


def _raw_server(ports) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    store = bytearray(1 << 20)
    view = memoryview(store)
    head = bytearray(_REQ.size)
    while True:
        if not conn.recv_into(head, _REQ.size, socket.MSG_WAITALL):
            return
        op, size = _REQ.unpack(head)
        if op == b"P":
            got = 0
            while got < size:
                got += conn.recv_into(view[got:size])
            conn.sendall(b"k")
        else:
            conn.sendall(view[:size])


def _time_interleaved(ops: dict[tuple[str, str], Callable[[int], object]],
                      count: int) -> dict[tuple[str, str], list[float]]:
    """Time every op once per round, round after round, so that all systems see the same
    machine (these VMs change speed when their CPUs go idle, and back)."""
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in ops}
    for i in range(count):
        for key, op in ops.items():
            t = time.perf_counter()
            op(i)
            samples[key].append(time.perf_counter() - t)
    return samples


def _stats(samples: list[float]) -> dict:
    stats = harness.percentiles(samples)
    stats["ops_s"] = round(len(samples) / sum(samples))
    return stats


def run(crail: harness.Crail, redis_port: int, sizes: list[int], count: int) -> list[dict]:
    import redis

    import crailpy

    ports = harness.SPAWN.Queue()
    server = harness.SPAWN.Process(target=_raw_server, args=(ports,), daemon=True)
    server.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=30)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = redis.Redis(port=redis_port)
    rows = []
    with crailpy.connect(crail.address) as store:
        store.create_table("/small", exist_ok=True)
        for size in sizes:
            value = bytes(size)
            into = bytearray(size)
            ack = bytearray(1)

            def raw_put(i: int) -> None:
                sock.sendall(_REQ.pack(b"P", size) + value)
                sock.recv_into(ack)

            def raw_get(i: int) -> None:
                sock.sendall(_REQ.pack(b"G", size))
                got = 0
                while got < size:
                    got += sock.recv_into(memoryview(into)[got:])

            keys = [f"/small/{size}-{i % 64}" for i in range(count)]
            store.put(keys[0], value)
            measured = _time_interleaved({
                ("crailpy", "put"): lambda i: store.put(keys[i], value),
                ("crailpy", "get"): lambda i: store.get(keys[i]),
                ("redis", "put"): lambda i: r.set(keys[i], value),
                ("redis", "get"): lambda i: r.get(keys[i]),
                ("raw socket", "put"): raw_put,
                ("raw socket", "get"): raw_get,
            }, count)
            for op in ("put", "get"):
                row = {"size": size, "op": op}
                for system in ("crailpy", "redis", "raw socket"):
                    for key, value_ in _stats(measured[(system, op)]).items():
                        row[f"{system} {key}"] = value_
                row["p50 vs redis"] = round(row["crailpy p50_us"] / row["redis p50_us"], 2)
                row["p50 vs raw socket"] = round(row["crailpy p50_us"] / row["raw socket p50_us"], 2)
                rows.append(row)
    sock.close()
    server.join(timeout=10)
    return rows
