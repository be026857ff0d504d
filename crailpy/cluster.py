"""A local cluster: a namenode and N datanodes as background processes.

Each process gets a pid file and a log under the state directory, and
`cluster.json` there records the addresses. `start` returns once every
datanode has registered, so a job can run right after it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crailpy.config import Config, state_dir
from crailpy.errors import CrailError, Exists, Timeout

START_TIMEOUT = 20.0


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped) does not."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reaps it if it is our child
        if done:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _spawn(state: Path, name: str, args: list[str]) -> int:
    log = open(state / f"{name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "crailpy", *args], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    (state / f"{name}.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def start(config: Config) -> dict[str, Any]:

    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True)
    running = [row for row in status(config) if row[2]]
    if running:
        raise Exists(f"a cluster is already running in {state} ({running[0][0]} pid "
                     f"{running[0][1]}); stop it first")
    for old in state.glob("*.pid"):
        old.unlink()
    c = config.cluster
    nn_address = config.namenode.address
    conf_args = ["--conf", os.environ["CRAILPY_CONF"]] if os.environ.get("CRAILPY_CONF") else []
    _spawn(state, "namenode", [*conf_args, "namenode", "--address", nn_address])
    store = _wait_for_namenode(config, state)
    try:
        expected = c.dram_datanodes + c.flash_datanodes
        host = nn_address.rpartition(":")[0] or "127.0.0.1"
        ports = iter(range(c.datanode_port, c.datanode_port + expected)) if c.datanode_port else None
        for tier, count, capacity in (("dram", c.dram_datanodes, c.dram_capacity),
                                      (c.flash_tier, c.flash_datanodes, c.flash_capacity)):
            for i in range(count):
                name = f"datanode-{'dram' if tier == 'dram' else 'flash'}-{i}"
                args = [*conf_args, "datanode", "--tier", tier, "--capacity", str(capacity),
                        "--namenode", nn_address,
                        "--address", f"{host}:{next(ports) if ports else 0}"]
                if tier != "dram":
                    args += ["--path", str(state / f"flash-{i}.img")]
                _spawn(state, name, args)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            _, nodes = store.usage()
            if sum(n.alive for n in nodes) >= expected:
                break
            failed = [p for p in state.glob("datanode-*.pid") if not _alive(int(p.read_text()))]
            if failed or time.monotonic() > deadline:
                name = failed[0].stem if failed else "datanodes"
                raise Timeout(f"{name} did not start: {_tail(state / f'{name}.log')}")
            time.sleep(0.05)
    except BaseException:
        store.close()
        stop(config)
        raise
    store.close()
    info = {"namenode": nn_address, "state_dir": str(state),
            "datanodes": [f"{n.address} ({n.storage_class})" for n in nodes]}
    (state / "cluster.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def _wait_for_namenode(config: Config, state: Path) -> Any:
    from crailpy.client import Store

    deadline = time.monotonic() + START_TIMEOUT
    pid = int((state / "namenode.pid").read_text())
    while True:
        try:
            return Store(config.namenode.address, config)
        except CrailError:
            if not _alive(pid) or time.monotonic() > deadline:
                stop(config)
                raise Timeout(f"the namenode did not start: {_tail(state / 'namenode.log')}") from None
            time.sleep(0.05)


def stop(config: Config) -> int:
    """Stop every process of the cluster: datanodes first, then the namenode."""
    state = state_dir(config)
    pids = sorted(state.glob("*.pid"), key=lambda p: p.stem == "namenode")
    stopped = 0
    for pid_file in pids:
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
            stopped += 1
        pid_file.unlink()
    return stopped


def status(config: Config) -> list[tuple[str, int, bool, str]]:
    """(name, pid, running, namenode address) of each process with a pid file."""
    state = state_dir(config)
    address = ""
    if (state / "cluster.json").exists():
        address = json.loads((state / "cluster.json").read_text()).get("namenode", "")
    rows = []
    for pid_file in sorted(state.glob("*.pid")):
        pid = int(pid_file.read_text())
        rows.append((pid_file.stem, pid, _alive(pid), address if pid_file.stem == "namenode" else ""))
    return rows
