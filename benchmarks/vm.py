"""The benchmarks that need the test-bed VM: `scripts/vm-bench.sh` runs this there.

In the VM (`--out FILE`) it measures the RDMA path against perftest
(benchmarks/rdma.py) and the NVMe/TCP initiator against the kernel's
(benchmarks/nvmf.py), and writes JSON. On the host (`--report FILE`) it writes
the table into docs/benchmarks.md between the vm markers. Goals: latency
<= 2 x the anchor, throughput >= 0.7 x.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks import report

BEGIN = "<!-- vm:begin (written by scripts/vm-bench.sh) -->"
END = "<!-- vm:end -->"


def measure() -> dict:
    from benchmarks import nvmf, rdma

    return {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "kernel": os.uname().release, "rows": rdma.rows() + nvmf.rows()}


def render(results: dict) -> str:
    lines = [f"Run {results['when']} in the test-bed VM (kernel {results['kernel']}, TCG, "
             "2 vCPUs, SoftRoCE `rxe0`, nvmet over TCP on loopback).", "",
             "| measure | unit | crailpy | anchor | anchor's | ratio | goal | met |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        ratio = row["crailpy"] / row["anchor_value"]
        latency = row["unit"] == "p50_us"
        goal, met = ("<= 2 x", ratio <= 2) if latency else (">= 0.7 x", ratio >= 0.7)
        verdict = "yes" if met else "**no**"
        if not row.get("goal", True):  # a row for reference
            goal = verdict = "-"
        lines.append(f"| {row['measure']} | {row['unit']} | {row['crailpy']} | {row['anchor']} | "
                     f"{row['anchor_value']} | {ratio:.2f} | {goal} | {verdict} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="measure (in the VM) and write JSON here")
    parser.add_argument("--report", type=Path, help="write these JSON results into the docs")
    args = parser.parse_args()
    if args.out:
        results = measure()
        args.out.write_text(json.dumps(results, indent=1))
        print(render(results))
    if args.report:
        report.insert(report.DOCS / "benchmarks.md", render(json.loads(args.report.read_text())),
                      BEGIN, END)


if __name__ == "__main__":
    main()
