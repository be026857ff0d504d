#!/usr/bin/env bash
# Run the tests that need real verbs in the RDMA test bed (docs/testbed.md):
# tests/rdma, tests/nvmf (against the kernel's NVMe target), the whole cluster
# tier and the datanode-fault probe tests, with DRAM blocks moving by RDMA.
# Extra arguments replace that default selection. Left out: the test of a hung
# (SIGSTOPped) datanode, which expects reads to time out; over RDMA the device
# serves them while the datanode's process is stopped, which is the point.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(tests/rdma tests/nvmf tests/cluster tests/probe/test_faults.py -k "not hung")
exec bash scripts/vm-run.sh "$VENV/bin/python" -m pytest -p no:cacheprovider -ra "${args[@]}"
