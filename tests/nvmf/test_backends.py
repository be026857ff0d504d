"""The flash datanode's target back ends that configure someone else's target: the Linux
kernel's nvmet (through configfs) and SPDK's nvmf_tgt (through its JSON-RPC socket).

nvmet needs root and its modules: scripts/vm-test.sh runs these in the test-bed
VM. SPDK is not packaged by Debian: its test runs where an `nvmf_tgt` binary is
on PATH (or named by CRAILPY_TEST_NVMF_TGT) and says so where it is not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import crailpy
from crailpy.datanode import Datanode
from crailpy.datanode_nvmf import nvmet
from crailpy.errors import CrailError
from tests import testbed
from tests.cluster.conftest import BLOCK, Cluster, start_cluster

NVMET_WHY = nvmet.available() if os.geteuid() == 0 else "needs root"
NVMF_TGT = os.environ.get("CRAILPY_TEST_NVMF_TGT") or shutil.which("nvmf_tgt")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path, dram=0, flash=0)
    yield c
    c.stop()


def _round_trip(cluster: Cluster, node: Datanode) -> None:
    with cluster.connect() as store:
        info = next(d for d in store.usage()[1] if d.address.endswith(f":{node.server.port}"))
        assert info.transport == "nvmf"
        data = os.urandom(5 * BLOCK + 4321)
        store.put("/f", data)
        assert store.get("/f") == data


@pytest.mark.skipif(NVMET_WHY is not None,
                    reason=f"{NVMET_WHY}: scripts/vm-test.sh runs this in a VM with nvmet")
def test_nvmet_back_end_configures_the_kernel_target_and_removes_it(cluster: Cluster) -> None:
    ports_before = sorted(p.name for p in (nvmet.NVMET / "ports").iterdir())
    nodes = [cluster.add_datanode("nvmf", 8 << 20, nvmf_backend="nvmet", nvmf_port="4420")
             for _ in range(2)]  # two subsystems on one kernel port
    subsystems = [nvmet.NVMET / "subsystems" / n.export.nqn for n in nodes]
    assert all(s.is_dir() for s in subsystems)
    assert all((s / "namespaces" / "1" / "enable").read_text().strip() == "1" for s in subsystems)
    made = [p for p in (nvmet.NVMET / "ports").iterdir() if p.name not in ports_before]
    for port in made:  # a port made here takes a 128 KiB write in the capsule
        assert (port / "param_inline_data_size").read_text().strip() == str(nvmet.IN_CAPSULE)
    for node in nodes:
        _round_trip(cluster, node)
    for node in nodes:
        node.stop()
    assert not any(s.exists() for s in subsystems)
    assert sorted(p.name for p in (nvmet.NVMET / "ports").iterdir()) == ports_before


@pytest.mark.skipif(NVMET_WHY is not None,
                    reason=f"{NVMET_WHY}: scripts/vm-test.sh runs this in a VM with nvmet")
def test_nvmet_back_end_undoes_a_half_made_export(cluster: Cluster, tmp_path: Path) -> None:
    nqn = "nqn.2026-11.io.crailpy:taken"
    (nvmet.NVMET / "subsystems" / nqn).mkdir()  # someone else's subsystem of that name
    try:
        with pytest.raises(OSError):
            nvmet.Export(nqn, str(tmp_path / "x.img"), "127.0.0.1", 4420)
        assert not (nvmet.NVMET / "subsystems" / nqn / "namespaces" / "1").exists()
    finally:
        (nvmet.NVMET / "subsystems" / nqn).rmdir()


@pytest.fixture
def spdk_socket(tmp_path: Path) -> Iterator[str]:
    if NVMF_TGT is None:
        pytest.skip("no SPDK nvmf_tgt binary on PATH (SPDK is not in Debian; build it and set "
                    "CRAILPY_TEST_NVMF_TGT to run this)")
    sock = str(tmp_path / "spdk.sock")
    proc = subprocess.Popen([NVMF_TGT, "-r", sock, "-m", "0x1", "-s", "512", "--no-huge"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30 * testbed.SLOW
        while not os.path.exists(sock):
            assert proc.poll() is None, "nvmf_tgt exited"
            assert time.monotonic() < deadline, "nvmf_tgt made no RPC socket"
            time.sleep(0.1)
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


def test_spdk_back_end_configures_nvmf_tgt_and_removes_it(cluster: Cluster, spdk_socket: str) -> None:
    from spdk.rpc.client import JSONRPCClient

    node = cluster.add_datanode("nvmf", 8 << 20, nvmf_backend="spdk", nvmf_port="4421",
                                spdk_socket=spdk_socket)
    rpc = JSONRPCClient(spdk_socket)
    try:
        assert node.export.nqn in {s["nqn"] for s in rpc.call("nvmf_get_subsystems")}
        _round_trip(cluster, node)
        node.stop()
        assert node.export.nqn not in {s["nqn"] for s in rpc.call("nvmf_get_subsystems")}
        assert not [b for b in rpc.call("bdev_get_bdevs") if b["name"].startswith("crailpy-")]
    finally:
        rpc.close()


def test_spdk_back_end_without_a_target_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(CrailError, match="no SPDK nvmf_tgt answers"):
        cluster.add_datanode("nvmf", 8 << 20, nvmf_backend="spdk",
                             spdk_socket=str(tmp_path / "none.sock"))
    assert not list((tmp_path / "state").glob("flash-*.img"))  # the file made for it is gone
    with crailpy.connect(cluster.address, cluster.config) as store:
        assert store.usage()[1] == []
