#!/usr/bin/env bash
# Runs inside the test-bed VM (scripts/vm-run.sh boots it): makes a SoftRoCE
# device, then runs its arguments as a command.
#
# rxe sits on a dummy interface with its own address, not on lo: RDMA CM
# cannot route over 127.0.0.1 (resolving the route fails with ENODEV), and
# binding to another address on lo fails the same way.
set -euo pipefail
modprobe rdma_rxe
modprobe dummy
ip link set lo up
ip link add crail0 type dummy
ip addr add "${CRAILPY_TEST_RDMA_HOST}/24" dev crail0
ip link set crail0 up
rdma link add rxe0 type rxe netdev crail0
rdma link
# The root filesystem is the host's, read-only: no bytecode.
export PYTHONDONTWRITEBYTECODE=1
exec "$@"
