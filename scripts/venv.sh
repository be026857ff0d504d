# Sourced by the other scripts: the project's virtual environment, made if missing.
VENV="${CRAILPY_VENV:-$PWD/.venv}"

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        return
    fi
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian ships venv apart from python3.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            python3 -m venv "$VENV"
        else
            echo "python3 -m venv failed: install python3-venv" >&2
            exit 1
        fi
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
}

# pyverbs comes from Debian (python3-pyverbs, built for Debian's Python 3.11):
# PyPI's is a source package that builds all of rdma-core. Link it into the
# venv when the venv's Python is of the same minor version.
link_pyverbs() {
    local source=/usr/lib/python3/dist-packages/pyverbs site
    [ -d "$source" ] || return 0
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    if [ "$("$VENV/bin/python" -c 'import sys; print(sys.version_info[:2])')" = \
         "$(/usr/bin/python3 -c 'import sys; print(sys.version_info[:2])')" ]; then
        ln -sfn "$source" "$site/pyverbs"
    fi
}
