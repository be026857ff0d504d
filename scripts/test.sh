#!/usr/bin/env bash
# Install what the tests need and run the whole suite: unit tests, the in-process
# cluster and probe tests that start and kill real daemons on this machine, then
# the RDMA test bed (scripts/vm-test.sh): a VM with SoftRoCE that runs the RDMA
# tests and the cluster tier over real verbs. Extra arguments go to the first
# pytest run only, and skip the VM.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/system-packages.sh
ensure_system_packages redis-server javac modprobe  # modprobe: the nvmf tests ask for nvmet
ensure_libraries  # before the install: the native RDMA library builds against them
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[test]'
link_pyverbs
set +e
"$VENV/bin/python" -m pytest -ra "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
if [ "$status" = 0 ] && [ "$#" = 0 ]; then
    bash scripts/vm-test.sh || status=$?
fi
exit "$status"
