"""What the tests run over: loopback TCP on any machine, or RDMA in the VM test bed.

scripts/vm-test.sh boots a VM with SoftRoCE (docs/testbed.md) and runs the
cluster and probe tiers in it with CRAILPY_TEST_TRANSPORT=rdma: DRAM datanodes
then serve on the address of the rxe device, refuse to start without RDMA,
and clients move their blocks by RDMA. The VM emulates its CPU (no KVM), so
its timings are stretched by CRAILPY_TEST_SLOW.
"""

from __future__ import annotations

import os

TRANSPORT = os.environ.get("CRAILPY_TEST_TRANSPORT", "tcp")
RDMA_HOST = os.environ.get("CRAILPY_TEST_RDMA_HOST", "10.77.0.1")
SLOW = float(os.environ.get("CRAILPY_TEST_SLOW", "1"))


def dram_datanode_flags() -> dict[str, str]:
    """Datanode settings for a DRAM datanode of this test run."""
    if TRANSPORT == "rdma":
        return {"address": f"{RDMA_HOST}:0", "rdma": "on"}
    return {}
