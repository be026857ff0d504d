#!/usr/bin/env bash
# Inside the test bed (started by scripts/vm-test.sh): the tests that need real verbs and the
# kernel's NVMe target, then the cluster tier again with every datanode on the nvmf tier
# behind nvmet, so the client suite runs over the kernel's target too. Both passes run;
# the status is the first failure's.
set -uo pipefail
pytest=("$CRAILPY_VENV/bin/python" -m pytest -p no:cacheprovider -ra)
"${pytest[@]}" tests/rdma tests/nvmf tests/cluster tests/probe/test_faults.py -k "not hung"
first=$?
CRAILPY_TEST_TRANSPORT=nvmf CRAILPY_TEST_NVMF_BACKEND=nvmet "${pytest[@]}" tests/cluster
second=$?
[ "$first" != 0 ] && exit "$first"
exit "$second"
