"""Probe-tier fixtures: real namenode and datanode processes on loopback ports.

`ProbeCluster` starts `python -m crailpy namenode` on a free port (picked by
binding port 0, retried if another process wins the race), starts datanodes
against it, waits until each has registered, and on teardown ends every process
it started (SIGTERM, then SIGKILL after a grace period). Each process logs to a
file under the test's tmp_path; a failing test shows the tails of those logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import crailpy
from crailpy.config import Config
from tests import testbed

HEARTBEAT = 0.2 * testbed.SLOW
DEAD_AFTER = 1.5 * testbed.SLOW
START_TIMEOUT = 15.0 * testbed.SLOW
CLI_TIMEOUT = 60.0 * testbed.SLOW



def child_env() -> dict[str, str]:
    """The environment of every child: ours without CRAILPY_CONF."""
    env = {k: v for k, v in os.environ.items() if k != "CRAILPY_CONF"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def client_config(**overrides: Any) -> Config:
    values = {"connect_timeout": 2.0 * testbed.SLOW, "io_timeout": 10.0 * testbed.SLOW, **overrides}
    return Config().override("client", **values)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unused_port() -> int:
    """A loopback port nothing listens on (bound and released; nobody we know takes it)."""
    return free_port()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - remembered for the failure message
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(IPv4 address, port) pairs process `pid` listens on (its socket inodes matched against
    /proc/net/tcp); "*" for any address. Two processes may listen on one port number at
    different addresses (in the VM: datanodes on the RDMA address and on loopback)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].rsplit(":", 1)
                ip = socket.inet_ntoa(bytes.fromhex(host)[::-1]) if len(host) == 8 else "*"
                found.add(("*" if ip == "0.0.0.0" else ip, int(port, 16)))
    return found


def listens_on(pid: int, address: str) -> bool:
    """Whether process `pid` listens on `address` (host:port)."""
    host, port = address.rsplit(":", 1)
    found = listening_addresses(pid)
    return (host, int(port)) in found or ("*", int(port)) in found


def pid_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """Assert `result` is a clean failure: non-zero exit, one stderr line, no traceback."""
    stderr = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert result.returncode != 0, f"expected failure, got exit 0; stderr={stderr!r}"
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}: {stderr!r}"
    return lines[0]


def run_cli(*args: str, input: bytes | None = None, timeout: float = CLI_TIMEOUT,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """`python -m crailpy ARGS` with bytes in and out, bounded in time."""
    return subprocess.run([sys.executable, "-m", "crailpy", *args], input=input, check=False,
                          capture_output=True, timeout=timeout, env=child_env(), cwd=cwd,
                          stdin=None if input is not None else subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"{result.args[3:]} exited {result.returncode}: "
        f"{result.stderr.decode(errors='replace')}")
    return result


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    tier: str = ""
    address: str = ""  # datanodes: host:port they serve on, once registered
    datanode_id: int = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class ProbeCluster:
    root: Path
    block_size: str | None = "1MiB"  # the capacities below are sized in 1 MiB blocks
    heartbeat: float = HEARTBEAT
    dead_after: float = DEAD_AFTER
    procs: list[Proc] = field(default_factory=list)
    namenode: Proc | None = None
    address: str = ""
    _stores: list[crailpy.Store] = field(default_factory=list)
    _counter: int = 0

    # ---- processes ----

    def _spawn(self, name: str, args: list[str]) -> Proc:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen([sys.executable, "-m", "crailpy", *args], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=child_env(), start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_namenode(self, attempts: int = 5) -> ProbeCluster:
        last = ""
        for attempt in range(attempts):
            port = free_port()
            address = f"127.0.0.1:{port}"
            args = ["namenode", "--address", address, "--heartbeat-interval", str(self.heartbeat),
                    "--dead-after", str(self.dead_after)]
            if self.block_size:
                args += ["--block-size", self.block_size]
            proc = self._spawn(f"namenode-{attempt}", args)
            deadline = time.monotonic() + START_TIMEOUT
            # Ours must be the process listening there (another may have taken the port).
            while time.monotonic() < deadline and proc.popen.poll() is None:
                if not listens_on(proc.pid, address):
                    time.sleep(0.02)
                    continue
                try:
                    crailpy.connect(address, client_config(connect_timeout=0.5)).close()
                except (ConnectionError, TimeoutError, crailpy.CrailError):
                    time.sleep(0.05)
                    continue
                self.namenode, self.address = proc, address
                return self
            last = proc.log_text()
            self.terminate(proc)
        pytest.fail(f"the namenode did not start in {attempts} attempts: {last[-2000:]}")

    def restart_namenode(self) -> Proc:
        """A new, empty namenode on the address of the old one (which must be gone)."""
        assert self.namenode is not None and self.namenode.popen.poll() is not None
        args = ["namenode", "--address", self.address, "--heartbeat-interval", str(self.heartbeat),
                "--dead-after", str(self.dead_after)]
        if self.block_size:
            args += ["--block-size", self.block_size]
        proc = self._spawn(f"namenode-restarted-{self._counter}", args)
        self._counter += 1

        def up() -> bool:
            if proc.popen.poll() is not None:
                pytest.fail(f"the restarted namenode exited: {proc.log_text()[-2000:]}")
            crailpy.connect(self.address, client_config(connect_timeout=0.5)).close()
            return True
        wait_for(up, START_TIMEOUT, "the restarted namenode to answer")
        self.namenode = proc
        return proc

    def add_datanodes(self, *specs: tuple[str, ...]) -> list[Proc]:
        """Start datanodes (tier, capacity, *more flags) at once; wait until all registered."""
        started = []
        for tier, capacity, *more in specs:
            self._counter += 1
            name = f"datanode-{tier}-{self._counter}"
            args = ["datanode", "--tier", tier, "--capacity", capacity, "--namenode", self.address,
                    *more]
            if tier in ("file", "nvmf"):
                args += ["--path", str(self.root / f"flash-{self._counter}.img")]
            for key, value in (testbed.dram_datanode_flags() if tier == "dram" else {}).items():
                if f"--{key}" not in args:
                    args += [f"--{key}", value]
            proc = self._spawn(name, args)
            proc.tier = tier
            started.append(proc)
        store = self.connect()
        for proc in started:
            wait_for(lambda p=proc: self._registered(p, store), START_TIMEOUT,
                     f"{proc.name} to register")
        return started

    def _registered(self, proc: Proc, store: crailpy.Store) -> bool:
        """True once the namenode lists `proc` (by the port it listens on) as alive."""
        if proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited with {proc.popen.returncode}: {proc.log_text()[-2000:]}")
        _, nodes = store.usage()
        for node in nodes:
            if node.alive and listens_on(proc.pid, node.address):
                proc.address, proc.datanode_id = node.address, node.id
                return True
        return False

    @property
    def datanodes(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("datanode")]

    def terminate(self, proc: Proc, grace: float = 3.0) -> None:
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def kill(self, proc: Proc) -> None:
        """SIGKILL and reap."""
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def wait_dead(self, proc: Proc, timeout: float = 5.0) -> None:
        """Until the namenode reports `proc`'s datanode as dead."""
        def dead() -> bool:
            with self.connect() as store:
                _, nodes = store.usage()
            return any(n.id == proc.datanode_id and not n.alive for n in nodes)
        wait_for(dead, timeout * testbed.SLOW, f"the namenode to declare {proc.name} dead",
                 interval=0.1)

    def stop(self) -> None:
        for store in self._stores:
            with contextlib.suppress(Exception):
                store.close()
        alive = [p for p in self.procs if p.popen.poll() is None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for proc in alive:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in alive:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(10)

    # ---- clients ----

    def connect(self, **client: Any) -> crailpy.Store:
        store = crailpy.connect(self.address, client_config(**client))
        self._stores.append(store)
        return store

    def fs(self, *args: str, input: bytes | None = None, timeout: float = CLI_TIMEOUT,
           cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
        """`crailpy fs --namenode ADDRESS ARGS`."""
        return run_cli("fs", "--namenode", self.address, *args, input=input, timeout=timeout,
                       cwd=cwd)

    def url(self, path: str) -> str:
        return f"crail://{self.address}{path}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}, exit {p.popen.poll()}) ---\n"
                         f"{p.log_text()[-1500:]}" for p in self.procs)


@pytest.fixture
def make_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., ProbeCluster]]:
    """A factory: make_cluster(("dram", "8MiB"), ("file", "16MiB"), block_size=...)."""
    clusters: list[ProbeCluster] = []

    def make(*datanodes: tuple[str, ...], block_size: str | None = "1MiB") -> ProbeCluster:
        root = tmp_path / f"cluster-{len(clusters)}"
        root.mkdir()
        cluster = ProbeCluster(root, block_size=block_size)
        clusters.append(cluster)
        cluster.start_namenode()
        if datanodes:
            cluster.add_datanodes(*datanodes)
        return cluster

    yield make
    failed = getattr(request.node, "rep_call", None)
    for cluster in clusters:
        if failed is not None and failed.failed:
            sys.stderr.write(cluster.logs() + "\n")
        cluster.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeCluster]:
    """One cluster for a whole module of non-destructive tests: 2 DRAM + 1 flash datanode."""
    root = tmp_path_factory.mktemp("shared-cluster")
    cluster = ProbeCluster(root)
    try:
        cluster.start_namenode()
        cluster.add_datanodes(("dram", "32MiB"), ("dram", "32MiB"), ("nvmf", "64MiB"))
        yield cluster
    finally:
        cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
