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
