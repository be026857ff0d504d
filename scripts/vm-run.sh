#!/usr/bin/env bash
# The RDMA test bed (docs/testbed.md): boot this machine's Debian kernel in a VM
# with virtme-ng over the host's own root filesystem, make a SoftRoCE device
# there (scripts/vm-inside.sh) and run the arguments as a command inside.
# Prints the command's output; exits with its status. The command finds a
# directory that comes back out of the VM in $CRAILPY_VM_OUT (made here unless
# the caller set it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/system-packages.sh
ensure_system_packages qemu-system-x86_64 busybox modprobe ip rdma ibv_devinfo ib_read_lat
ensure_vm_kernel
ensure_venv
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -n 1)
if [ -z "${CRAILPY_VM_OUT:-}" ]; then
    CRAILPY_VM_OUT=$(mktemp -d)
    trap 'rm -rf "$CRAILPY_VM_OUT"' EXIT
fi
command=$(printf '%q ' "$@")
# The guest emulates its CPU (a KVM guest hangs early in boot on these machines),
# so everything in it runs several times slower: CRAILPY_TEST_SLOW stretches the
# tests' heartbeats and timeouts (tests/testbed.py).
environment="CRAILPY_VENV=$VENV CRAILPY_VM_OUT=$CRAILPY_VM_OUT CRAILPY_TEST_TRANSPORT=rdma"
environment+=" CRAILPY_TEST_RDMA_HOST=10.77.0.1 CRAILPY_TEST_SLOW=5"
set +e
timeout 2400 env PATH="$VENV/bin:$PATH" "$VENV/bin/vng" --disable-kvm --run "$kernel" \
    --memory 2G --cpus 2 --rwdir "$CRAILPY_VM_OUT" \
    --exec "cd $PWD && env $environment bash scripts/vm-inside.sh $command > $CRAILPY_VM_OUT/log 2>&1" \
    < /dev/null > "$CRAILPY_VM_OUT/vng.log" 2>&1  # it reopens its output: keep ours intact
status=$?
set -e
if [ -f "$CRAILPY_VM_OUT/log" ]; then
    cat "$CRAILPY_VM_OUT/log"
else
    echo "the VM left no log; virtme-ng said:" >&2
    tail -n 30 "$CRAILPY_VM_OUT/vng.log" >&2
fi
exit "$status"
