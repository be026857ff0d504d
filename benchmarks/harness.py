"""What every benchmark needs: a crailpy cluster, a Redis server, worker processes, statistics.

Everything is started by the benchmark itself on free loopback ports and
stopped at the end, so one command measures crailpy and its anchors in the
same run on the same machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from crailpy import cluster as cluster_ops
from crailpy.config import Config, NamenodeConfig

SPAWN = mp.get_context("spawn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Crail:
    address: str
    state_dir: Path
    config: Config


@contextlib.contextmanager
def crail_cluster(dram_datanodes: int = 2, dram_capacity: int = 1 << 30, flash_datanodes: int = 0,
                  flash_capacity: int = 1 << 30,
                  block_size: int = NamenodeConfig().block_size) -> Iterator[Crail]:
    """A namenode and datanodes as real processes, as `crailpy cluster start` makes them,
    with the block size a user gets unless told otherwise."""
    state = Path(tempfile.mkdtemp(prefix="crailpy-bench-"))
    conf = state / "crailpy.toml"
    port = free_port()
    conf.write_text(f'[namenode]\naddress = "127.0.0.1:{port}"\nblock_size = {block_size}\n')
    old = os.environ.get("CRAILPY_CONF")
    os.environ["CRAILPY_CONF"] = str(conf)
    config = Config().override("namenode", address=f"127.0.0.1:{port}", block_size=block_size)
    config = config.override("cluster", state_dir=str(state), dram_datanodes=dram_datanodes,
                             dram_capacity=dram_capacity, flash_datanodes=flash_datanodes,
                             flash_capacity=flash_capacity)
    try:
        cluster_ops.start(config)
        yield Crail(f"127.0.0.1:{port}", state, config)
    finally:
        cluster_ops.stop(config)
        if old is None:
            os.environ.pop("CRAILPY_CONF", None)
        else:
            os.environ["CRAILPY_CONF"] = old
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """redis-server from the distribution, in memory only, on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/test.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--protected-mode", "no",
                             "--proto-max-bulk-len", "1gb", "--client-query-buffer-limit", "1gb"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _worker(target: Callable[..., Any], barrier: Any, results: Any, *args: Any) -> None:
    """One worker process: what `target(barrier, *args)` returns or raises goes to
    `results`. A failure breaks the barrier, so that the other workers stop at it
    instead of waiting there for this one."""
    try:
        results.put(target(barrier, *args))
    except BaseException as exc:
        barrier.abort()
        results.put(exc)


def run_workers(target: Callable[..., Any], args_list: list[tuple]) -> list[Any]:
    """Run `target(barrier, *args)` in one process per args, started together: their
    results, or the first failure raised."""
    barrier = SPAWN.Barrier(len(args_list))
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=_worker, args=(target, barrier, results, *args))
             for args in args_list]
    for p in procs:
        p.start()
    out = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"a benchmark worker failed (exit codes {failed})")
    for item in out:
        if isinstance(item, BaseException):
            raise item
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in microseconds."""
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6  # noqa: E731
    return {"p50_us": round(pick(0.5), 1), "p99_us": round(pick(0.99), 1),
            "mean_us": round(statistics.fmean(ordered) * 1e6, 1)}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
