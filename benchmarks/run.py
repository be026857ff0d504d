"""Run the benchmark suite: crailpy and its anchors in the same run, one report.

    python -m benchmarks.run            # the full suite (several minutes); updates docs/
    python -m benchmarks.run --quick    # tiny sizes, to check that it works; writes to --out

Results go to `<out>/results.json`, `<out>/*.png`, and a Markdown report between the
markers in `docs/benchmarks.md` (the full run) or `<out>/report.md` (with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

from benchmarks import coldstart, harness, large, memory, metadata, report, shuffle, small

MiB = 1 << 20
DOCS = report.DOCS

FULL = {
    "large_sizes": [1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB],
    "large_volume": 512 * MiB,
    "large_clients": [1, 4],
    "large_rounds": 3,
    "small_sizes": [1024, 4096, 65536],
    "small_count": 3000,
    "metadata_count": 20000,
    "shuffle": (8, 8, 1024 * MiB),
    "coldstart_runs": 11,
    "memory_files": 1_000_000,
    "dram_capacity": 1536 * MiB,
}
QUICK = {
    "large_sizes": [1 * MiB, 4 * MiB],
    "large_volume": 8 * MiB,
    "large_clients": [1, 2],
    "large_rounds": 2,
    "small_sizes": [1024],
    "small_count": 50,
    "metadata_count": 200,
    "shuffle": (2, 2, 8 * MiB),
    "coldstart_runs": 1,
    "memory_files": 2000,
    "dram_capacity": 64 * MiB,
}


def machine() -> dict:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory": mem.split(":")[1].strip(),
            "python": platform.python_version(), "kernel": platform.release()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    parser.add_argument("--out", type=Path, default=DOCS / "benchmarks",
                        help="where results.json and the plots go")
    parser.add_argument("--only", nargs="*", help="run only these parts "
                        "(large small metadata shuffle coldstart memory)")
    args = parser.parse_args()
    # A SIGTERM (a timeout) must still stop the cluster and Redis this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    p = QUICK if args.quick else FULL
    parts = set(args.only or ["large", "small", "metadata", "shuffle", "coldstart", "memory"])
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    saved = args.out / "results.json"
    if args.only and saved.exists():  # a partial run updates the parts it ran
        results = json.loads(saved.read_text())
    results.update({"machine": machine(), "quick": args.quick,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    started = time.perf_counter()
    with harness.crail_cluster(dram_capacity=p["dram_capacity"]) as crail, \
            harness.redis_server() as redis_port:
        if "large" in parts:
            results["large"] = large.run(crail, redis_port, p["large_sizes"], p["large_volume"],
                                         p["large_clients"], p["large_rounds"])
        if "small" in parts:
            results["small"] = small.run(crail, redis_port, p["small_sizes"], p["small_count"])
        if "metadata" in parts:
            results["metadata"] = metadata.run(crail, p["metadata_count"])
        if "shuffle" in parts:
            results["shuffle"] = shuffle.run(crail, redis_port, *p["shuffle"])
        if "coldstart" in parts:
            results["coldstart"] = coldstart.run(crail, redis_port, p["coldstart_runs"])
        if "memory" in parts:
            results["memory"] = memory.run(crail, p["memory_files"])
    results["seconds"] = round(time.perf_counter() - started, 1)
    saved.write_text(json.dumps(results, indent=2) + "\n")
    markdown = report.render(results, args.out)
    if args.quick:
        (args.out / "report.md").write_text(markdown)
    else:
        report.insert(DOCS / "benchmarks.md", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
