# Sourced by the other scripts: Debian packages the tests and benchmarks run against.
# command name -> Debian package
declare -A DEBIAN_PACKAGE=(
    [redis-server]=redis-server
    # the Spark shuffle shim is compiled on the spot (crailpy/spark/jar.py); Spark runs on it
    [javac]=openjdk-17-jdk-headless
    # the RDMA test bed: a VM (qemu, busybox for its initramfs), SoftRoCE, verbs tools
    [qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static [modprobe]=kmod
    [ip]=iproute2 [rdma]=iproute2 [ibv_devinfo]=ibverbs-utils [ib_read_lat]=perftest
    # the kernel's NVMe/TCP initiator with several I/Os in flight (benchmarks/nvmf.py)
    [fio]=fio
)
# Packages that no command names: verbs libraries and headers (the native
# library builds against them), and pyverbs.
LIBRARY_PACKAGES=(rdma-core ibverbs-providers libibverbs-dev librdmacm-dev python3-pyverbs)

apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $*"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    else
        echo "please install: $* (apt-get install $*)" >&2
        exit 1
    fi
}

ensure_system_packages() {
    local missing=()
    for command in "$@"; do
        command -v "$command" >/dev/null || missing+=("${DEBIAN_PACKAGE[$command]}")
    done
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
}

ensure_libraries() {
    local missing=()
    for package in "${LIBRARY_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
}

# The test bed boots Debian's own kernel, which carries rdma_rxe as a module.
ensure_vm_kernel() {
    ls /boot/vmlinuz-*-amd64 >/dev/null 2>&1 || apt_install linux-image-amd64
}
