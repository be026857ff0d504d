"""RDMA data path against perftest, run in the VM test bed by benchmarks/vm.py.

Inside the VM it starts a namenode and one DRAM datanode serving by RDMA as
processes, and measures crailpy's block transfers by RDMA against perftest's
`ib_read_lat`, `ib_write_lat`, `ib_read_bw` and `ib_write_bw` on the same
SoftRoCE device in the same run:

- latency: one 4 KiB transfer at a time, p50 of 1,000. crailpy's read is
  `Reader.pread` of an open file (its location known: one RDMA READ through
  the connection's registered scratch into the caller's buffer); its write is
  the `write_now` of one block of an open writer, bound to its endpoint as a
  reader binds the blocks it reads, what a small file's `close()` does: an
  RDMA WRITE, done when the datanode's device acknowledged it. A third row,
  for reference against the same `ib_write_lat`, is the same write `placed`:
  with the 1-byte READ behind it whose answer confirms placement, in the same
  C call, what the last write of a file pays before COMMIT (a writer confirms
  each datanode once; Crail chains that READ behind every WRITE).
  perftest's figure is `t_typical`, its median.
- bandwidth: 1 MiB transfers, 16 in flight (the client's `inflight`), over the
  64 blocks of a file, in MiB/s; perftest's `BW average` with its default
  depth.

"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import crailpy
from crailpy.config import Config

HOST = os.environ.get("CRAILPY_TEST_RDMA_HOST", "10.77.0.1")
DEVICE = "rxe0"
KiB, MiB = 1 << 10, 1 << 20
LAT_SIZE, BW_SIZE = 4 * KiB, MiB
LAT_ITERS, BW_ITERS = 1000, 1000


def perftest(tool: str, size: int, iterations: int) -> dict:
    """Run `tool` as server and client over rdma_cm; its result row as numbers."""
    for _ in range(2):  # a pair of them hung once, never to finish: start a new pair
        try:
            return _perftest_once(tool, size, iterations)
        except subprocess.TimeoutExpired:
            pass
    return _perftest_once(tool, size, iterations)


def _perftest_once(tool: str, size: int, iterations: int) -> dict:
    args = [tool, "-d", DEVICE, "-R", "-F", "-s", str(size), "-n", str(iterations)]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # the client retries until the server listens
            client = subprocess.run([*args, HOST], capture_output=True, text=True, timeout=180)
            if client.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if client.returncode != 0:
            raise RuntimeError(f"{tool} failed: {client.stdout[-500:]} {client.stderr[-500:]}")
    finally:
        server.kill()
        server.wait()
    for line in client.stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == str(size) and all(re.fullmatch(r"[\d.]+", c) for c in cells):
            values = [float(c) for c in cells]
            if "_lat" in tool:  # bytes iterations t_min t_max t_typical t_avg t_stdev p99 p99.9
                return {"p50_us": values[4], "p99_us": values[7]}
            return {"MiB_s": values[3]}  # bytes iterations BW_peak BW_average MsgRate
    raise RuntimeError(f"no result row in {tool}'s output: {client.stdout[-500:]}")


def start(state: Path) -> tuple[list[subprocess.Popen], str]:
    """A namenode on loopback and one DRAM datanode serving by RDMA, as processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    run = [sys.executable, "-m", "crailpy"]
    log = open(state / "daemons.log", "ab")
    procs = [subprocess.Popen([*run, "namenode", "--address", address, "--block-size", "1MiB"],
                              stdout=log, stderr=log)]
    time.sleep(2)
    procs.append(subprocess.Popen([*run, "datanode", "--address", f"{HOST}:0", "--rdma", "on",
                                   "--capacity", "256MiB", "--namenode", address],
                                  stdout=log, stderr=log))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with crailpy.connect(address) as store:
                if any(d.alive and "rdma" in d.transports for d in store.usage()[1]):
                    return procs, address
        except (ConnectionError, crailpy.CrailError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the cluster did not start: {(state / 'daemons.log').read_text()[-2000:]}")


def p50_p99(samples: list[float]) -> dict:
    samples.sort()
    return {"p50_us": round(statistics.median(samples) * 1e6, 1),
            "p99_us": round(samples[int(len(samples) * 0.99)] * 1e6, 1)}


def crail_latency(store: crailpy.Store) -> tuple[dict, dict, dict]:
    store.put("/lat", os.urandom(LAT_SIZE))
    reader = store.open("/lat")
    buf = memoryview(bytearray(LAT_SIZE))
    reads = []
    for _ in range(LAT_ITERS):
        t = time.perf_counter()
        reader.pread(buf, 0)
        reads.append(time.perf_counter() - t)
    writer = store.create("/lat-w", size_hint=LAT_SIZE, exact=True)
    datanode, block = writer._blocks[0]
    endpoint = store._endpoint(datanode, "/lat-w", 0)
    assert endpoint.name == "rdma"
    bound = endpoint.bind(block)
    writes: list[float] = []
    placed: list[float] = []
    for samples in (writes, placed):
        for _ in range(LAT_ITERS):
            t = time.perf_counter()
            # None: it could not go at once
            assert bound.write_now(0, buf, samples is placed) == LAT_SIZE
            samples.append(time.perf_counter() - t)
    writer.abort()
    return p50_p99(reads), p50_p99(writes), p50_p99(placed)


def crail_bandwidth(store: crailpy.Store) -> tuple[dict, dict]:
    blocks = 64
    store.put("/bw", os.urandom(blocks * BW_SIZE))
    reader = store.open("/bw")
    targets = [reader._location(i) for i in range(blocks)]
    buf = memoryview(bytearray(BW_SIZE * 16))
    out = {}
    for kind in ("read", "write"):
        window: list = []
        t = time.perf_counter()
        for i in range(BW_ITERS):
            datanode, block = targets[i % blocks]
            endpoint = store._endpoint(datanode, "/bw", i % blocks)
            piece = buf[(i % 16) * BW_SIZE : (i % 16 + 1) * BW_SIZE]
            window.append((endpoint.read if kind == "read" else endpoint.write)(block, 0, piece))
            if len(window) >= 16:
                window.pop(0).result()
        for transfer in window:
            transfer.result()
        if kind == "write":
            endpoint.confirm()  # one datanode: every WRITE placed, as a writer's close makes sure
        out[kind] = {"MiB_s": round(BW_ITERS * BW_SIZE / MiB / (time.perf_counter() - t), 1)}
    return out["read"], out["write"]


def rows() -> list[dict]:
    state = Path(tempfile.mkdtemp(prefix="crailpy-rdma-bench-"))
    procs, address = start(state)
    try:
        with crailpy.connect(address, Config().override("client", transport="rdma",
                                                        io_timeout=120.0)) as store:
            read_lat, write_lat, placed_lat = crail_latency(store)
            read_bw, write_bw = crail_bandwidth(store)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    write_anchor = perftest("ib_write_lat", LAT_SIZE, LAT_ITERS)
    measured = [  # the last item: the row has a goal (the `placed` write is for reference)
        ("RDMA read latency 4 KiB", read_lat, perftest("ib_read_lat", LAT_SIZE, LAT_ITERS),
         "p50_us", True),
        ("RDMA write latency 4 KiB", write_lat, write_anchor, "p50_us", True),
        ("RDMA write, placed, 4 KiB (reference)", placed_lat, write_anchor, "p50_us", False),
        ("RDMA read bandwidth 1 MiB", read_bw, perftest("ib_read_bw", BW_SIZE, BW_ITERS),
         "MiB_s", True),
        ("RDMA write bandwidth 1 MiB", write_bw, perftest("ib_write_bw", BW_SIZE, BW_ITERS),
         "MiB_s", True),
    ]
    return [{"measure": name, "unit": unit, "crailpy": ours[unit], "anchor": "perftest",
             "anchor_value": theirs[unit], "goal": goal}
            for name, ours, theirs, unit, goal in measured]
