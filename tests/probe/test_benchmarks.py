"""The benchmark suite runs end to end at a tiny size. It proves the suite works; it asserts
nothing about speed (figures come from `python -m benchmarks.run`, see docs/benchmarks.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.probe

ROOT = Path(__file__).resolve().parents[2]


def test_quick_suite_produces_every_part(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs it)")
    run = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for part in ("large", "small", "metadata", "shuffle", "coldstart", "memory"):
        assert results[part], part
    assert {r["clients"] for r in results["large"]} == {1, 2}
    for row in results["large"]:
        assert all(row[k] > 0 for k in row if k.endswith("MB/s")), row
        for op in ("write", "read"):  # measured in rounds: the worst is no better than the median
            assert 0 < row[f"{op} vs raw socket, worst round"] <= row[f"{op} vs raw socket"], row
    assert {(r["op"], r["in flight"]) for r in results["metadata"]} >= {("lookup", 1), ("lookup", 64)}
    report = (tmp_path / "report.md").read_text()
    assert "### Goals" in report and "cold start" in report
    for png in ("large-1-clients.png", "large-2-clients.png", "small-latency.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_quick_spark_benchmark_times_both_shuffles() -> None:
    pytest.importorskip("pyspark", reason="pyspark is in the test extras: pip install -e '.[test]'")
    if shutil.which("javac") is None:
        pytest.skip("no JDK: scripts/test.sh installs openjdk-17-jdk-headless")
    run = subprocess.run([sys.executable, "-m", "benchmarks.spark", "--quick"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith(("| sort", "| groupBy"))]
    assert len(rows) == 2, run.stdout
    for row in rows:
        builtin, ours = (float(cell.strip().removesuffix(" s")) for cell in row.split("|")[2:4])
        assert builtin > 0 and ours > 0, row
