"""Spark shuffles through crailpy: the settings that put a SparkSession's shuffles there.

    from pyspark.sql import SparkSession
    import crailpy.spark
    spark = crailpy.spark.configure(SparkSession.builder, "10.0.0.1:9060").getOrCreate()

The shim (Java, `java/`) is built by `jar.build()` against the pinned pyspark;
docs/spark.md explains the layout and every `spark.crailpy.*` key.
"""

from __future__ import annotations

from typing import Any

from crailpy import config
from crailpy.spark.jar import PYSPARK_VERSION, build

__all__ = ["PYSPARK_VERSION", "build", "settings", "configure"]


def settings(namenode: str | None = None, **crailpy: Any) -> dict[str, str]:
    """Spark settings for crailpy's shuffle. `crailpy` keys become `spark.crailpy.<key>`
    (root, storageClass, lease, fetchThreads, maxBytesInFlight)."""
    jar = str(build())
    out = {
        "spark.driver.extraClassPath": jar,
        "spark.executor.extraClassPath": jar,
        "spark.shuffle.manager": "io.crailpy.spark.CrailpyShuffleManager",
        "spark.shuffle.sort.io.plugin.class": "io.crailpy.spark.CrailpyShuffleDataIO",
        # Map outputs outlive executors, so neither a shuffle service nor shuffle
        # tracking need keep executors (or their disks) around for them.
        "spark.shuffle.service.enabled": "false",
        "spark.dynamicAllocation.shuffleTracking.enabled": "false",
        # A map output's location names no host: no reduce task waits for one.
        "spark.shuffle.reduceLocality.enabled": "false",
        "spark.crailpy.namenode": namenode or config.load().namenode.address,
    }
    out.update({f"spark.crailpy.{key}": str(value) for key, value in crailpy.items()})
    return out


def configure(builder: Any, namenode: str | None = None, **crailpy: Any) -> Any:
    """Apply `settings` to a `SparkSession.Builder` (before the first SparkContext starts:
    the class paths are read when the JVM is launched)."""
    for key, value in settings(namenode, **crailpy).items():
        builder = builder.config(key, value)
    return builder
