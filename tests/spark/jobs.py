"""The Spark jobs the shuffle tests and the benchmark run, with crailpy's shuffle and Spark's own.

`python -m tests.spark.jobs` runs them with Spark's built-in shuffle and prints
their results as JSON: the reference the crailpy runs are compared with.
"""

from __future__ import annotations

import json
import operator
import sys
from typing import Any, Callable

RECORDS = 20_000
KEYS = 97


def pairs(spark: Any) -> Any:
    return spark.sparkContext.parallelize(range(RECORDS), 4).map(lambda i: (i % KEYS, i))


def group_by_key(spark: Any) -> Any:
    grouped = pairs(spark).groupByKey(5).mapValues(sorted).collect()
    return sorted([k, list(v)] for k, v in grouped)


def reduce_by_key(spark: Any) -> Any:
    return sorted(list(kv) for kv in pairs(spark).reduceByKey(operator.add, 3).collect())


def sort_by_key(spark: Any) -> Any:
    # the order of the whole output is the result: sortByKey's range partitions, in turn
    return [list(kv) for kv in pairs(spark).map(lambda kv: (kv[1] * 7919 % RECORDS, kv[0]))
            .sortByKey(numPartitions=4).collect()]


def frames(spark: Any) -> tuple[Any, Any]:
    left = spark.range(RECORDS).selectExpr("id % 1000 AS k", "id AS v")
    right = spark.range(1000).selectExpr("id AS k", "concat('name-', id) AS name")
    return left, right


def dataframe_join(spark: Any) -> Any:
    left, right = frames(spark)
    rows = left.join(right, "k").groupBy("name").count().collect()
    return sorted([r["name"], r["count"]] for r in rows)


def aggregation(spark: Any) -> Any:
    from pyspark.sql import functions as f

    left, _ = frames(spark)
    rows = left.groupBy((left.k % 13).alias("g")).agg(f.sum("v").alias("s"), f.count("v").alias("n"),
                                                      f.max("v").alias("m")).collect()
    return sorted([r["g"], r["s"], r["n"], r["m"]] for r in rows)


JOBS: dict[str, Callable[[Any], Any]] = {job.__name__: job for job in (
    group_by_key, reduce_by_key, sort_by_key, dataframe_join, aggregation)}

# Shuffle joins, not broadcasts, so that the join moves its rows through the shuffle.
SQL = {"spark.sql.autoBroadcastJoinThreshold": "-1", "spark.sql.shuffle.partitions": "6",
       "spark.ui.enabled": "false"}


def main() -> None:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("builtin-shuffle")
    for key, value in SQL.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        json.dump({name: job(spark) for name, job in JOBS.items()}, sys.stdout)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
