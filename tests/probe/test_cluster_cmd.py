"""`crailpy cluster start|status|stop`: a local cluster as background processes.

The processes `cluster start` launches are not our children (the command
exits and leaves them running), so teardown stops them with `cluster stop` and,
should that fail, with SIGKILL to the pids recorded in the state directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import free_port, ok, one_line_error, pid_running, run_cli, wait_for

pytestmark = pytest.mark.probe

MiB = 1 << 20


def _pids(state: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in state.glob("*.pid")}


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    yield state
    # Whatever the test did, leave no process of this cluster behind (without relying on
    # `cluster stop`, which is under test): SIGTERM, then SIGKILL after a grace period.
    pids = list(_pids(state).values()) if state.exists() else []
    for pid in pids:
        if pid_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while any(pid_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if pid_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start(state: Path, attempts: int = 3) -> tuple[int, subprocess.CompletedProcess]:
    """`cluster start` on a free port; a port taken in between is retried."""
    for _ in range(attempts):
        port = free_port()
        result = run_cli("cluster", "start", "--state-dir", str(state), "--port", str(port),
                         "--dram-datanodes", "2", "--flash-datanodes", "1",
                         "--dram-capacity", "32MiB", "--flash-capacity", "64MiB", timeout=60)
        if result.returncode == 0:
            return port, result
        if b"did not start" not in result.stderr:
            break
    pytest.fail(f"cluster start failed: {result.stderr.decode(errors='replace')}")


def test_cluster_start_status_use_stop(state_dir: Path, tmp_path: Path) -> None:
    port, result = _start(state_dir)
    address = f"127.0.0.1:{port}"
    assert f"namenode at {address}" in result.stdout.decode()
    assert "3 datanodes" in result.stdout.decode()

    pids = _pids(state_dir)
    assert set(pids) == {"namenode", "datanode-dram-0", "datanode-dram-1", "datanode-flash-0"}
    assert all(pid_running(pid) for pid in pids.values())

    status = ok(run_cli("cluster", "status", "--state-dir", str(state_dir), timeout=30))
    rows = [line.split() for line in status.stdout.decode().splitlines()]
    assert {r[0]: (int(r[2]), r[3]) for r in rows} == {n: (p, "running") for n, p in pids.items()}
    assert [r[-1] for r in rows if r[0] == "namenode"] == [address]

    # The cluster serves: 2 DRAM and 1 flash datanode registered, and bytes round-trip.
    df = ok(run_cli("fs", "--namenode", address, "df", timeout=30)).stdout.decode()
    states = [line.split() for line in df.splitlines() if line[:1].isdigit()]
    assert sorted((r[2], r[3], r[6] + r[7]) for r in states) == [
        ("dram", "up", "32.0MiB"), ("dram", "up", "32.0MiB"), ("flash", "up", "64.0MiB")]
    data = os.urandom(3 * MiB + 1)
    (tmp_path / "in").write_bytes(data)
    ok(run_cli("fs", "put", str(tmp_path / "in"), f"crail://{address}/f", timeout=30))
    ok(run_cli("fs", "--namenode", address, "get", "/f", str(tmp_path / "out"), timeout=30))
    assert (tmp_path / "out").read_bytes() == data
    ok(run_cli("fs", "--namenode", address, "put", "--storage-class", "flash", "-", "/on-flash",
               input=data, timeout=30))
    assert ok(run_cli("fs", "--namenode", address, "cat", "/on-flash", timeout=30)).stdout == data

    # A second start on the same state directory refuses, in one line, and changes nothing.
    again = run_cli("cluster", "start", "--state-dir", str(state_dir), "--port", str(free_port()),
                    timeout=60)
    line = one_line_error(again)
    assert "already running" in line and str(state_dir) in line
    assert _pids(state_dir) == pids
    assert all(pid_running(pid) for pid in pids.values())

    # Stop ends every process and says how many.
    stopped = ok(run_cli("cluster", "stop", "--state-dir", str(state_dir), timeout=90))
    assert stopped.stdout.decode().strip() == "stopped 4 processes"
    wait_for(lambda: not any(pid_running(pid) for pid in pids.values()), 10,
             "every cluster process to be gone")
    assert not list(state_dir.glob("*.pid"))
    assert not list(state_dir.glob("flash-*.img")), "a stopped flash datanode leaves its file"

    after = run_cli("cluster", "status", "--state-dir", str(state_dir), timeout=30)
    assert after.returncode != 0
    assert "no cluster" in one_line_error(after)
    gone = run_cli("fs", "--namenode", address, "ls", "/", timeout=30)
    assert "cannot reach namenode" in one_line_error(gone)


def test_cluster_status_without_cluster(tmp_path: Path) -> None:
    result = run_cli("cluster", "status", "--state-dir", str(tmp_path / "nothing"), timeout=30)
    assert "no cluster" in one_line_error(result)


def test_cluster_status_reports_a_dead_process(state_dir: Path) -> None:
    """A datanode that died (SIGKILL) shows as stopped and status exits non-zero."""
    _start(state_dir)
    pids = _pids(state_dir)
    victim = pids["datanode-dram-1"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_running(victim), 10, "the killed datanode to be gone")

    def reported_stopped() -> bool:
        result = run_cli("cluster", "status", "--state-dir", str(state_dir), timeout=30)
        rows = {line.split()[0]: line.split()[3] for line in result.stdout.decode().splitlines()}
        return result.returncode != 0 and rows["datanode-dram-1"] == "stopped" and \
            all(state == "running" for name, state in rows.items() if name != "datanode-dram-1")

    # The killed process may linger as a zombie until init reaps it; that is not running.
    wait_for(reported_stopped, 10, "cluster status to report the killed datanode stopped",
             interval=0.3)


def test_cluster_status_calls_a_zombie_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # A process that has exited but that its parent (this test) has not reaped yet.
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: not pid_running(zombie.pid), 10, "the child to exit")
        (state / "namenode.pid").write_text(f"{zombie.pid}\n")
        result = run_cli("cluster", "status", "--state-dir", str(state), timeout=30)
        assert "stopped" in result.stdout.decode(), result.stdout
        assert result.returncode != 0
        start = time.monotonic()
        ok(run_cli("cluster", "stop", "--state-dir", str(state), timeout=60))
        assert time.monotonic() - start < 3
    finally:
        zombie.wait(10)


def test_cluster_datanode_ports_can_be_chosen(state_dir: Path) -> None:
    import crailpy

    base = free_port()
    while not all(_port_free(p) for p in range(base, base + 3)):
        base = free_port()
    port = free_port()
    ok(run_cli("cluster", "start", "--state-dir", str(state_dir), "--port", str(port),
               "--dram-datanodes", "2", "--flash-datanodes", "1", "--dram-capacity", "16MiB",
               "--flash-capacity", "16MiB", "--datanode-port", str(base), timeout=60))
    with crailpy.connect(f"127.0.0.1:{port}") as store:
        ports = sorted(int(d.address.rsplit(":", 1)[1]) for d in store.usage()[1])
    assert ports == [base, base + 1, base + 2]
    ok(run_cli("cluster", "stop", "--state-dir", str(state_dir), timeout=60))


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
