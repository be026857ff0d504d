#!/usr/bin/env bash
# Run the tests that need real verbs in the RDMA test bed (docs/testbed.md), as
# scripts/vm-suite.sh lists them: tests/rdma, tests/nvmf (against the kernel's NVMe
# target), the whole cluster tier and the datanode-fault probe tests with DRAM blocks
# moving by RDMA, then the cluster tier with every datanode behind nvmet. Extra
# arguments replace that selection with one pytest run. Left out: the test of a hung
# (SIGSTOPped) datanode, which expects reads to time out; over RDMA the device
# serves them while the datanode's process is stopped, which is the point.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ "$#" -gt 0 ]; then
    exec bash scripts/vm-run.sh "$VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@"
fi
exec bash scripts/vm-run.sh bash scripts/vm-suite.sh
