#!/usr/bin/env bash
# The RDMA benchmark (benchmarks/rdma.py) in the test-bed VM: crailpy's RDMA
# latency and bandwidth against perftest on the same SoftRoCE device, written
# into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export CRAILPY_VM_OUT
CRAILPY_VM_OUT=$(mktemp -d)
trap 'rm -rf "$CRAILPY_VM_OUT"' EXIT
bash scripts/vm-run.sh "$VENV/bin/python" -m benchmarks.rdma --out "$CRAILPY_VM_OUT/rdma.json"
"$VENV/bin/python" -m benchmarks.rdma --report "$CRAILPY_VM_OUT/rdma.json"
