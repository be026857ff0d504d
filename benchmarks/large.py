"""Large objects: write and read throughput of crailpy against raw sockets and Redis.

Each client process moves `volume` bytes per object size, as objects of that
size, all clients starting together; throughput is all bytes over the time from
the first start to the last end. The raw-socket anchor sends each object with
`sendall` to a receiver process that takes it with `recv_into` and acknowledges
it with one byte (a put is acknowledged too); Redis is SET and GET of the same
objects through redis-py with hiredis. Before each size, crailpy's clients wait until
the space that the deletes of the size before freed is reusable again. crailpy's readers
receive into buffers they have touched, as the raw receiver's buffer is by its write
phase: page faults of fresh memory are not the transport's cost.

Throughput on this machine drifts by 10-20% within minutes, for every system alike, so
a ratio of two single measurements minutes apart says as much about the drift as about
crailpy. `run` therefore measures the systems in rounds, in rotating order, and reports
the median of the rounds' ratios, with the worst round's against the raw sockets.
"""

from __future__ import annotations

import socket
import statistics
import time
from typing import Any

from benchmarks import harness


def _payload(size: int) -> bytearray:
    return bytearray(b"\x5a\xa5\x0f\xf0" * (size // 4)) + bytearray(size % 4)


def _phases(barrier: Any, sizes: list[int], volume: int, write, read, settle=None) -> dict:
    """Time `write(size, i)` then `read(size, i)` for every object of every size; before
    each size, `settle()` waits for what the size before it left to finish."""
    out = {}
    for size in sizes:
        count = max(1, volume // size)
        if settle is not None:
            settle()
        barrier.wait()
        t0 = time.perf_counter()
        for i in range(count):
            write(size, i)
        t1 = time.perf_counter()
        barrier.wait()
        t2 = time.perf_counter()
        for i in range(count):
            read(size, i)
        t3 = time.perf_counter()
        out[size] = (count * size, t0, t1, t2, t3)
    return out


def crail_worker(barrier, address: str, sizes: list[int], volume: int, index: int) -> dict:
    import crailpy

    with crailpy.connect(address) as store:
        store.mkdir(f"/large/c{index}", parents=True)
        buffers = {s: _payload(s) for s in sizes}
        into = {s: _payload(s) for s in sizes}  # touched (see above)

        def write(size: int, i: int) -> None:  # an object of known size, as put() writes it
            with store.create(f"/large/c{index}/{size}-{i}", size_hint=size, exact=True) as f:
                f.write(buffers[size])

        def read(size: int, i: int) -> None:
            path = f"/large/c{index}/{size}-{i}"
            with store.open(path) as f:
                f.readinto(into[size])
            store.delete(path)

        def settle() -> None:
            """Deleted space comes back once its key has changed, a heartbeat or two later
            (docs/protocol.md 8.8): a write phase that began before would time that wait
            instead of the writes, as one of 64 MiB objects did after the deletes of 16 MiB."""
            deadline = time.monotonic() + 30
            while any(c.freeing for c in store.usage()[0]) and time.monotonic() < deadline:
                time.sleep(0.05)

        return _phases(barrier, sizes, volume, write, read, settle)


def redis_worker(barrier, port: int, sizes: list[int], volume: int, index: int) -> dict:
    import redis

    r = redis.Redis(port=port)
    buffers = {s: bytes(_payload(s)) for s in sizes}

    def write(size: int, i: int) -> None:
        r.set(f"c{index}:{size}:{i}", buffers[size])

    def read(size: int, i: int) -> None:
        key = f"c{index}:{size}:{i}"
        assert len(r.get(key)) == size
        r.delete(key)

    return _phases(barrier, sizes, volume, write, read)


def _receiver(ports, sizes: list[int], volume: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    ports.put(listener.getsockname()[1])
    conn, _ = listener.accept()
    buf = memoryview(bytearray(max(sizes)))
    for size in sizes:
        for _ in range(2 * max(1, volume // size)):  # the write phase, then the read phase
            got = 0
            while got < size:
                got += conn.recv_into(buf[got:size])
            conn.sendall(b"k")
    conn.close()


def socket_worker(barrier, sizes: list[int], volume: int, index: int) -> dict:
    """One sender process; its receiver is a child process of its own."""
    ports = harness.SPAWN.Queue()
    receiver = harness.SPAWN.Process(target=_receiver, args=(ports, sizes, volume))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=30)))
    buffers = {s: _payload(s) for s in sizes}
    ack = bytearray(1)

    def send(size: int, i: int) -> None:
        sock.sendall(buffers[size])
        sock.recv_into(ack)

    phases = _phases(barrier, sizes, volume, send, send)
    receiver.join()
    return phases


def _aggregate(per_worker: list[dict], size: int) -> tuple[float, float]:
    """(write, read) throughput in MB/s over all workers for one size."""
    total = sum(w[size][0] for w in per_worker)
    write = total / (max(w[size][2] for w in per_worker) - min(w[size][1] for w in per_worker))
    read = total / (max(w[size][4] for w in per_worker) - min(w[size][3] for w in per_worker))
    return write / 1e6, read / 1e6


def run(crail: harness.Crail, redis_port: int, sizes: list[int], volume: int,
        clients: list[int], rounds: int = 1) -> list[dict]:
    """Each row: one client count and size. The three systems are measured in `rounds`
    rounds, in an order that rotates, so that none always runs first; a row gives each
    one's median throughput, the median of the rounds' ratios, and the worst round's
    ratio to the raw sockets."""
    systems = {
        "crailpy": lambda n: harness.run_workers(crail_worker, [(crail.address, sizes, volume, i)
                                                                for i in range(n)]),
        "raw socket": lambda n: harness.run_workers(socket_worker, [(sizes, volume, i)
                                                                    for i in range(n)]),
        "redis": lambda n: harness.run_workers(redis_worker, [(redis_port, sizes, volume, i)
                                                              for i in range(n)]),
    }
    rows = []
    for n in clients:
        measured: dict[str, list[list[dict]]] = {name: [] for name in systems}
        for r in range(rounds):
            names = list(systems)
            for name in names[r % len(names):] + names[: r % len(names)]:
                measured[name].append(systems[name](n))
        for size in sizes:
            row: dict = {"clients": n, "size": size}
            rates = {name: [_aggregate(w, size) for w in per_round]
                     for name, per_round in measured.items()}
            for k, op in enumerate(("write", "read")):
                for name in systems:
                    row[f"{name} {op} MB/s"] = round(statistics.median(x[k] for x in rates[name]), 1)
                for anchor in ("raw socket", "redis"):
                    ratios = [c[k] / a[k] for c, a in zip(rates["crailpy"], rates[anchor])]
                    row[f"{op} vs {anchor}"] = round(statistics.median(ratios), 2)
                    if anchor == "raw socket":
                        row[f"{op} vs raw socket, worst round"] = round(min(ratios), 2)
            rows.append(row)
    return rows
