#!/usr/bin/env bash
# Install crailpy, start a local cluster (a namenode, 2 DRAM and 1 flash datanode as
# background processes) and run a real job against it. The cluster keeps running;
# stop it with `.venv/bin/crailpy cluster stop`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check .
crailpy="$VENV/bin/crailpy"

"$crailpy" cluster stop >/dev/null 2>&1 || true
"$crailpy" cluster start

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 50000000 /dev/urandom > "$work/sample.bin"
"$crailpy" fs mkdir -p /quickstart
"$crailpy" fs put -f "$work/sample.bin" /quickstart/sample.bin
"$crailpy" fs ls -l /quickstart
"$crailpy" fs get /quickstart/sample.bin "$work/back.bin"
sent=$(sha256sum < "$work/sample.bin" | cut -d' ' -f1)
back=$(sha256sum < "$work/back.bin" | cut -d' ' -f1)
echo "sha256 put: $sent"
echo "sha256 get: $back"
[ "$sent" = "$back" ] || { echo "checksums differ" >&2; exit 1; }
"$crailpy" fs rm -r /quickstart

"$VENV/bin/python" examples/shuffle_job.py --writers 4 --readers 4
"$crailpy" fs df
echo "crailpy is running: try '$crailpy fs ls /'; stop it with '$crailpy cluster stop'"
