"""What the tests run over: loopback TCP on any machine, RDMA in the VM test bed, or
NVMe/TCP (the nvmf transport) on either.

scripts/vm-test.sh boots a VM with SoftRoCE (docs/testbed.md) and runs the
cluster and probe tiers in it with CRAILPY_TEST_TRANSPORT=rdma: DRAM datanodes
then serve on the address of the rxe device, refuse to start without RDMA,
and clients move their blocks by RDMA. The VM emulates its CPU (no KVM), so
its timings are stretched by CRAILPY_TEST_SLOW.
"""

from __future__ import annotations

import os

import pytest

TRANSPORT = os.environ.get("CRAILPY_TEST_TRANSPORT", "tcp")
RDMA_HOST = os.environ.get("CRAILPY_TEST_RDMA_HOST", "10.77.0.1")
SLOW = float(os.environ.get("CRAILPY_TEST_SLOW", "1"))


def tier(wanted: str) -> str:
    """The tier a test's datanode runs as: with CRAILPY_TEST_TRANSPORT=nvmf every datanode
    exports its blocks over NVMe/TCP (CRAILPY_TEST_NVMF_BACKEND: builtin, nvmet in the VM,
    or spdk), so that the client suite runs over the nvmf transport."""
    return "nvmf" if TRANSPORT == "nvmf" else wanted


def not_over_nvmf(why: str) -> pytest.MarkDecorator:
    """Skip a test of another tier's path in the run where every datanode is nvmf."""
    return pytest.mark.skipif(TRANSPORT == "nvmf", reason=f"every datanode is nvmf in this run: {why}")


def nvmf_datanode_flags() -> dict[str, str]:
    backend = os.environ.get("CRAILPY_TEST_NVMF_BACKEND", "builtin")
    flags = {"nvmf_backend": backend, **({"nvmf_port": "4420"} if backend != "builtin" else {})}
    if backend == "spdk":  # a running nvmf_tgt's RPC socket (docs/nvmf.md, "Testing")
        flags["spdk_socket"] = os.environ["CRAILPY_TEST_SPDK_SOCKET"]
    return flags


def dram_datanode_flags() -> dict[str, str]:
    """Datanode settings for a DRAM datanode of this test run."""
    if TRANSPORT == "rdma":
        return {"address": f"{RDMA_HOST}:0", "rdma": "on"}
    return {}
