"""Spark jobs shuffling through crailpy: PySpark in local-cluster mode (two executor JVMs)
against a real crailpy cluster on loopback ports.

Each job's result is compared with the same job under Spark's built-in shuffle
(`tests/spark/jobs.py`, run in a subprocess: one process holds one SparkContext).
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import crailpy
from tests import testbed
from tests.cluster.conftest import Cluster, start_cluster
from tests.probe.conftest import wait_for
from tests.spark import jobs

pyspark = pytest.importorskip("pyspark", reason="pyspark is in the test extras: pip install -e '.[test]'")
pytestmark = [
    pytest.mark.skipif(shutil.which("javac") is None,
                       reason="no JDK: scripts/test.sh installs openjdk-17-jdk-headless"),
    testbed.not_over_nvmf("the shim's Java client moves blocks over TCP only (docs/spark.md)"),
]
ROOT = "/spark"
LEASE = 6  # seconds: renewed (and other drivers' leases checked) every 2 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("crailpy"), dram=2, flash=0, dram_capacity=256 << 20)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> Iterator[crailpy.Store]:
    with cluster.connect() as store:
        yield store


@pytest.fixture(scope="module")
def spark(cluster: Cluster) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    import crailpy.spark

    builder = SparkSession.builder.master("local-cluster[2,1,1024]").appName("crailpy-shuffle-test")
    # Dynamic allocation with neither a shuffle service nor shuffle tracking: Spark allows
    # that only because the shuffle's storage is reliable (supportsReliableStorage).
    elastic = {"spark.dynamicAllocation.enabled": "true", "spark.dynamicAllocation.minExecutors": "2",
               "spark.dynamicAllocation.maxExecutors": "2", "spark.executor.memory": "768m"}
    for key, value in {**jobs.SQL, **elastic}.items():
        builder = builder.config(key, value)
    session = crailpy.spark.configure(builder, cluster.address, root=ROOT, lease=f"{LEASE}s").getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="module")
def builtin() -> dict[str, Any]:
    """Every job's result under Spark's own shuffle."""
    done = subprocess.run([sys.executable, "-m", "tests.spark.jobs"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def app_dir(spark: Any) -> str:
    return f"{ROOT}/{spark.sparkContext.applicationId}"


@pytest.mark.parametrize("job", sorted(jobs.JOBS))
def test_job_gives_what_the_builtin_shuffle_gives(spark: Any, builtin: dict[str, Any], job: str,
                                                  store: crailpy.Store) -> None:
    assert json.loads(json.dumps(jobs.JOBS[job](spark))) == builtin[job]
    # the bytes went through crailpy: map output files in this application's shuffle directories
    shuffles = [s.path for s in store.list(app_dir(spark)) if s.type == "directory"]
    assert any(store.list(path) for path in shuffles)


def executor_pids(spark: Any) -> list[int]:
    """The executor JVMs of this application (local-cluster launches them as processes)."""
    app = spark.sparkContext.applicationId
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmdline and app.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def counted_shuffle(spark: Any) -> tuple[Any, Any]:
    """A shuffle whose map tasks count the records they map: a re-run map task counts again."""
    sc = spark.sparkContext
    mapped = sc.accumulator(0)

    def tag(i: int) -> tuple[int, int]:
        mapped.add(1)
        return i % 13, i

    return sc.parallelize(range(4000), 4).map(tag).reduceByKey(operator.add, 4), mapped


EXPECTED = sorted((k, sum(i for i in range(4000) if i % 13 == k)) for k in range(13))


def test_executors_killed_after_the_map_stage_cost_no_map_task(spark: Any) -> None:
    shuffled, mapped = counted_shuffle(spark)
    assert sorted(shuffled.collect()) == EXPECTED and mapped.value == 4000
    killed = executor_pids(spark)
    assert len(killed) == 2
    for pid in killed:
        os.kill(pid, 9)
    wait_for(lambda: len(set(executor_pids(spark)) - set(killed)) == 2, 120, "new executors")
    sc = spark.sparkContext
    sc.setJobGroup("after-kill", "the same shuffle, read by new executors")
    assert sorted(shuffled.collect()) == EXPECTED
    assert mapped.value == 4000  # every map output was read from crailpy; no map task ran again
    # Spark's own account agrees: the job ran the 4 reduce tasks and nothing else (its map
    # stage was skipped: every map output was still registered), and none failed.
    stages = [sc.statusTracker().getStageInfo(stage) for job in sc.statusTracker().getJobIdsForGroup("after-kill")
              for stage in sc.statusTracker().getJobInfo(job).stageIds]
    ran = [info for info in stages if info is not None and info.numCompletedTasks]
    assert [(info.numCompletedTasks, info.numFailedTasks) for info in ran] == [(4, 0)]


def test_a_lost_map_output_reruns_that_map_task_only(spark: Any, store: crailpy.Store) -> None:
    shuffled, mapped = counted_shuffle(spark)
    assert sorted(shuffled.collect()) == EXPECTED and mapped.value == 4000
    shuffle_dir = max((s for s in store.list(app_dir(spark)) if s.type == "directory"),
                      key=lambda s: int(s.path.rsplit("/", 1)[1]))
    outputs = store.list(shuffle_dir.path)
    assert len(outputs) == 4  # one file per map task
    store.delete(outputs[0].path)
    # Executors keep the map outputs they opened (MapOutputIndexes): once the freed blocks'
    # key has changed, their reads of it are refused, and the file is not found again.
    wait_for(lambda: not sum(c.freeing for c in store.usage()[0]), 120, "the freed blocks to be reusable")
    assert sorted(shuffled.collect()) == EXPECTED  # a fetch failure, then that map task again
    assert mapped.value == 5000


def test_removing_a_shuffle_deletes_its_data(spark: Any, store: crailpy.Store) -> None:
    shuffled, _ = counted_shuffle(spark)
    shuffled.count()
    before = {s.path for s in store.list(app_dir(spark)) if s.type == "directory"}
    cleaner = spark.sparkContext._jsc.sc().cleaner().get()
    for path in before:
        cleaner.doCleanupShuffle(int(path.rsplit("/", 1)[1]), True)
    assert [s for s in store.list(app_dir(spark)) if s.type == "directory"] == []


def test_a_dead_drivers_data_is_reclaimed_when_its_lease_runs_out(spark: Any, store: crailpy.Store) -> None:
    store.mkdir(f"{ROOT}/app-dead/0", parents=True)
    store.put(f"{ROOT}/app-dead/0/17", os.urandom(1000))
    store.put(f"{ROOT}/app-dead/_lease", b"1")  # a one-second lease, never renewed
    wait_for(lambda: not store.exists(f"{ROOT}/app-dead"), 4 * LEASE, "the dead application's data to go")
    assert store.exists(app_dir(spark))  # a live application's is kept


def test_stopping_the_application_deletes_its_data(spark: Any, store: crailpy.Store) -> None:
    path = app_dir(spark)
    assert store.exists(path)
    spark.stop()
    assert not store.exists(path)


def test_the_jar_command_prints_the_shims_jar() -> None:
    done = subprocess.run([sys.executable, "-m", "crailpy", "spark", "jar"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    jar = Path(done.stdout.strip())
    assert jar.suffix == ".jar" and jar.is_file()
    listing = subprocess.run(["jar", "--list", "--file", str(jar)], capture_output=True, text=True).stdout
    assert "io/crailpy/spark/CrailpyShuffleManager.class" in listing
