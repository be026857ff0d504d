# Sourced by the other scripts: Debian packages the tests and benchmarks run against.
# command name -> Debian package
declare -A DEBIAN_PACKAGE=([redis-server]=redis-server)

ensure_system_packages() {
    local missing=()
    for command in "$@"; do
        command -v "$command" >/dev/null || missing+=("${DEBIAN_PACKAGE[$command]}")
    done
    [ "${#missing[@]}" = 0 ] && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "please install: ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
}
