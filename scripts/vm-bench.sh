#!/usr/bin/env bash
# The benchmarks of the test-bed VM (benchmarks/vm.py): crailpy's RDMA path
# against perftest on SoftRoCE, and its NVMe/TCP initiator against the kernel's
# on nvmet; the table goes into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/system-packages.sh
ensure_system_packages fio
export CRAILPY_VM_OUT
CRAILPY_VM_OUT=$(mktemp -d)
trap 'rm -rf "$CRAILPY_VM_OUT"' EXIT
bash scripts/vm-run.sh "$VENV/bin/python" -m benchmarks.vm --out "$CRAILPY_VM_OUT/vm.json"
"$VENV/bin/python" -m benchmarks.vm --report "$CRAILPY_VM_OUT/vm.json"
