"""The Java client (crailpy/spark/java/io/crailpy/client) against a real in-process cluster.

Each test compiles the client and tests/spark/java/.../ClientCheck.java, runs one ClientCheck
mode as a subprocess (it exits non-zero with FAIL on the first failed check), and for the
files that cross languages checks with the Python client: bytes Java wrote read by Python and
bytes Python wrote read by Java.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from crailpy.protocol import frames
from crailpy.protocol import messages as m
from crailpy.spark.jar import compile_java
from tests import testbed
from tests.cluster.conftest import BLOCK, Cluster, start_cluster

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "crailpy" / "spark" / "java" / "io" / "crailpy" / "client"
CHECKS = Path(__file__).parent / "java"

pytestmark = [
    pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                       reason="javac/java not found: the Java client needs a JDK 17"),
    testbed.not_over_nvmf("the Java client moves blocks over TCP only"),
]


def pattern(seed: int, n: int) -> bytes:
    """ClientCheck.pattern: bytes that differ from block to block."""
    return bytes(((i * 2654435761 + seed * 97) >> 13) & 0xFF for i in range(n))


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("java-classes")
    compile_java(CLIENT, [], out)
    compile_java(CHECKS, [out], out)
    return out


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path, dram=2, flash=0)
    yield c
    c.stop()


def run_check(classes: Path, address: str, mode: str, *args: str) -> str:
    java = shutil.which("java")
    done = subprocess.run([java, "-cp", str(classes), "io.crailpy.client.ClientCheck", address, mode, *args],
                          capture_output=True, text=True, timeout=300 * testbed.SLOW)
    assert done.returncode == 0, f"ClientCheck {mode} failed:\n{done.stdout}{done.stderr}"
    assert f"OK {mode}" in done.stdout.splitlines(), done.stdout
    return done.stdout


def test_wire_matches_the_python_codec(classes: Path) -> None:
    node = m.NodeInfo(7, m.NodeType.FILE, 1, -1, 1, BLOCK, 3 * BLOCK + 1, 1_700_000_000_123_456_789)
    datanode = m.DatanodeInfo(0xFFFFFFF0, 1, 127, m.Transport.TCP | m.Transport.RDMA, 0, 65535,
                              m.RdmaRegion(4791, 0xFEDCBA9876543210), m.NvmfTarget(4420, "nqn.x:ü"), "höst-ü")
    block = m.Block(0xFFFFFFF0, 2 ** 40, 0xF234ABCD)
    reply = m.Located(node, (datanode,), (block, block), (m.Part(2 ** 63 + 5, 9),), b"\x00\xfe")
    raw = frames.encode_response(m.Op.LOOKUP, 1, reply)
    out = run_check(classes, "unused:0", "wire", raw.hex())
    want = (
        "PY info=NodeInfo[id=7, type=1, storageClass=1, locationClass=-1, committed=true, "
        f"blockSize={BLOCK}, size={3 * BLOCK + 1}, mtimeNs=1700000000123456789] "
        "datanodes=[DatanodeInfo[id=-16, storageClass=1, locationClass=127, transports=3, alive=false, "
        f"port=65535, rdmaPort=4791, rdmaAddress={0xFEDCBA9876543210 - 2 ** 64}, nvmfPort=4420, "
        "nvmfNqn=nqn.x:ü, host=höst-ü]] "
        f"blocks=[4294967280:{2 ** 40}:f234abcd, 4294967280:{2 ** 40}:f234abcd] "
        f"parts=[Part[id={2 ** 63 + 5 - 2 ** 64}, size=9]] data=00fe"
    )
    assert want in out.splitlines()


def test_sizes_and_ranges_java_to_python(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "sizes")
    with cluster.connect() as store:
        names = sorted(int(s.path.rsplit("/", 1)[1]) for s in store.list("/java"))
        assert names == sorted([0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 123, 40 * BLOCK + 7])
        for n in names:
            assert store.get(f"/java/{n}") == pattern(n, n), f"/java/{n}: Python reads other bytes"
        # A small file written through create() takes a chunk at close, not a whole block.
        _, nodes = store.usage()
        assert sum(d.used for d in nodes) < sum(-(-n // BLOCK) * BLOCK for n in names)


def test_files_under_a_block_take_chunks_not_blocks(classes: Path, tmp_path: Path) -> None:
    """Twelve files of 1.5 MiB in 32 MiB of 4 MiB blocks: with a whole block taken for
    each (and cut down at commit), the eight blocks ran out at the ninth."""
    cluster = start_cluster(tmp_path, dram=2, flash=0, dram_capacity=16 << 20, block_size=4 << 20)
    try:
        run_check(classes, cluster.address, "small-files", "12", str(3 << 19))
        with cluster.connect() as store:
            assert sum(d.used for d in store.usage()[1]) == 12 * (2 << 20)  # a 2 MiB chunk each
    finally:
        cluster.stop()


def test_a_write_waits_for_freed_space_that_is_coming_back(classes: Path, tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, dram=1, flash=0, dram_capacity=1 << 20)
    try:
        run_check(classes, cluster.address, "refill", str(1 << 20))
    finally:
        cluster.stop()


def test_python_to_java(classes: Path, cluster: Cluster) -> None:
    sizes = [0, 1, 4000, BLOCK - 1, BLOCK, BLOCK + 1, 7 * BLOCK + 3]
    with cluster.connect() as store:
        store.mkdir("/python")
        for n in sizes:
            if n <= store.config.client.inline_max:  # the namenode holds these bytes
                store.put(f"/python/{n}", pattern(n, n))
                assert not store.block_locations(f"/python/{n}")
            else:
                with store.create(f"/python/{n}") as f:
                    f.write(pattern(n, n))
    run_check(classes, cluster.address, "read-python", *map(str, sizes))
    with cluster.connect() as store:  # the check must notice other bytes
        assert pattern(1, 1) != b"\xff"
        store.put("/python/1", b"\xff")
    java = shutil.which("java")
    done = subprocess.run([java, "-cp", str(classes), "io.crailpy.client.ClientCheck", cluster.address,
                           "read-python", "1"], capture_output=True, text=True, timeout=60 * testbed.SLOW)
    assert done.returncode == 1 and "FAIL read-python" in done.stdout, done.stdout


def test_errors(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "errors")
    with cluster.connect() as store:
        assert not store.exists("/e")


def test_abort_leaves_nothing(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "abort")
    with cluster.connect() as store:
        assert [s.path for s in store.list("/a")] == ["/a/x"]
        assert store.get("/a/x") == b"\x07"


def test_list_and_delete(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "list")
    with cluster.connect() as store:
        assert not store.exists("/l")


def test_concurrent_threads(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "concurrent")
    with cluster.connect() as store:
        assert store.get("/c/shared") == pattern(77, 16 * BLOCK + 999)


def test_deleted_file_read_fails_cleanly(classes: Path, cluster: Cluster) -> None:
    run_check(classes, cluster.address, "stale")
    with cluster.connect() as store:
        assert not store.exists("/s/old")
        assert store.get("/s/new") == pattern(6, 6 * BLOCK + 10)


def test_stale_keys_are_refreshed(classes: Path, tmp_path: Path) -> None:
    """One key region per datanode, so a delete changes the key of every other block."""
    cluster = start_cluster(tmp_path, dram=0, flash=0)
    try:
        for _ in range(2):
            cluster.add_datanode("dram", 8 << 20, key_region=8 << 20)
        run_check(classes, cluster.address, "rotate")
        with cluster.connect() as store:
            assert store.get("/r/written") == pattern(10, 4 * BLOCK + 100)
    finally:
        cluster.stop()


def test_nvmf_datanode_is_refused_clearly(classes: Path, tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, dram=0, flash=1)
    try:
        run_check(classes, cluster.address, "nvmf")
    finally:
        cluster.stop()
