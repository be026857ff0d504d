"""Spark jobs with Spark's built-in shuffle and with crailpy's, in the same run.

    python -m benchmarks.spark            # 2 GB sort and a groupBy aggregation; updates docs/
    python -m benchmarks.spark --quick    # tiny sizes, to check that it works; prints only

Each shuffle runs in its own process (`--run MODE`: one SparkContext per process),
PySpark in local-cluster mode with two executors of one core, against a crailpy
cluster of real processes. The jobs are DataFrame jobs, so the records never leave
the JVM: the time is Spark's and the shuffle's, not Python's. Goal: crailpy's time
<= 1.1 x the built-in shuffle's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks import harness, report

BEGIN = "<!-- spark:begin (written by python -m benchmarks.spark) -->"
END = "<!-- spark:end -->"
GiB = 1 << 30
ROW = 100  # bytes of one sort record: an 8-byte key and a 92-character value
MODES = ("builtin", "crailpy")


def jobs(spark, records: int, partitions: int) -> dict[str, float]:
    """Seconds of each job, best of two runs (the first also warms the JVMs up)."""
    from pyspark.sql import functions as f

    rows = spark.range(records, numPartitions=partitions).select(
        f.xxhash64("id").alias("key"),
        f.substring(f.concat(f.sha2(f.col("id").cast("string"), 512), f.lit("x" * 28)), 1, ROW - 8)
        .alias("value"))
    work = {
        "sort": lambda: rows.sort("key").write.format("noop").mode("overwrite").save(),
        "groupBy": lambda: rows.groupBy((f.col("key") % 1_000_000).alias("g"))
        .agg(f.count("*"), f.max("value")).write.format("noop").mode("overwrite").save(),
    }
    seconds = {}
    for name, job in work.items():
        times = []
        for _ in range(2):
            started = time.perf_counter()
            job()
            times.append(time.perf_counter() - started)
            drop_shuffles(spark)
        seconds[name] = round(min(times), 2)
    return seconds


def drop_shuffles(spark) -> None:
    """Remove every shuffle so far, as Spark's ContextCleaner would once they are garbage
    (untimed, in both modes): the runs' shuffles need not all fit in the cluster at once."""
    sc = spark.sparkContext._jsc.sc()
    cleaner = sc.cleaner().get()
    for shuffle_id in range(sc.newShuffleId()):
        cleaner.doCleanupShuffle(shuffle_id, True)


def run_mode(mode: str, address: str, records: int, partitions: int, memory: str) -> dict[str, float]:
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(f"local-cluster[2,1,{int(memory[:-1]) * 1024 + 512}]")
               .appName(f"bench-{mode}").config("spark.executor.memory", memory)
               .config("spark.sql.shuffle.partitions", str(partitions))
               .config("spark.sql.adaptive.enabled", "false").config("spark.ui.enabled", "false"))
    if mode == "crailpy":
        import crailpy.spark

        builder = crailpy.spark.configure(builder, address)
    spark = builder.getOrCreate()
    try:
        return jobs(spark, records, partitions)
    finally:
        spark.stop()


def measure(volume: int, partitions: int, memory: str) -> dict:
    records = volume // ROW
    results: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "volume": volume,
                     "records": records, "partitions": partitions}
    with harness.crail_cluster(dram_datanodes=2, dram_capacity=max(volume * 3 // 2, 256 << 20)) as crail:
        import crailpy.spark

        crailpy.spark.build()  # not in the timed runs
        for mode in MODES:
            done = subprocess.run([sys.executable, "-m", "benchmarks.spark", "--run", mode, "--address",
                                   crail.address, "--volume", str(volume), "--partitions", str(partitions),
                                   "--memory", memory], capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise SystemExit(f"the {mode} run failed:\n{done.stderr[-3000:]}")
            results[mode] = json.loads(done.stdout.splitlines()[-1])
    return results


def render(results: dict) -> str:
    lines = [f"Run {results['when']}: {results['records']:,} records of {ROW} bytes "
             f"({results['volume'] / GiB:.1f} GiB), {results['partitions']} map and reduce partitions, "
             "local-cluster with 2 executors of 1 core; seconds, best of two.", "",
             "| job | built-in shuffle | crailpy | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for job, builtin in results["builtin"].items():
        ours = results["crailpy"][job]
        ratio = ours / builtin
        lines.append(f"| {job} | {builtin:.2f} s | {ours:.2f} s | {ratio:.2f} | <= 1.1 x | "
                     f"{'yes' if ratio <= 1.1 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a check that it runs")
    parser.add_argument("--run", choices=MODES, help=argparse.SUPPRESS)  # one mode, in its own process
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--volume", type=int, default=2 * GiB)
    parser.add_argument("--partitions", type=int, default=32)
    parser.add_argument("--memory", default="3g", help="executor memory, whole gigabytes")
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_mode(args.run, args.address, args.volume // ROW, args.partitions, args.memory)))
        return
    if args.quick:
        args.volume, args.partitions, args.memory = 8 << 20, 4, "1g"
    results = measure(args.volume, args.partitions, args.memory)
    markdown = render(results)
    if not args.quick:
        out = report.DOCS / "benchmarks" / "spark.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        report.insert(report.DOCS / "benchmarks.md", markdown, BEGIN, END)
    print(markdown)


if __name__ == "__main__":
    main()
