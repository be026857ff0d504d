#!/usr/bin/env bash
# Install what the tests need and run the whole suite: unit tests, the in-process
# cluster, and probe tests that start and kill real daemons. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/system-packages.sh
ensure_system_packages redis-server
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[test]'
set +e
"$VENV/bin/python" -m pytest -ra "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$status"
