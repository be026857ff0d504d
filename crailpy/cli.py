"""The `crailpy` command: daemons, `fs` file commands, `cluster` and `iobench`.

Every failure a user can cause (a missing file, an unreachable namenode, a bad
size) is printed as one line on stderr with a non-zero exit status, never as a
traceback.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, BinaryIO, Callable

import click

from crailpy import config as configuration
from crailpy import cluster as cluster_ops
from crailpy import iobench as iobench_ops
from crailpy.client import FileStatus, Store
from crailpy.errors import CrailError, InvalidArgument

COPY_CHUNK = 8 << 20
PROGRESS_OVER = 4 << 20  # transfers larger than this show a progress bar on a terminal


class CliGroup(click.Group):
    """Turns every expected error into one line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CrailError, OSError, ValueError) as exc:
            if isinstance(exc, BrokenPipeError):
                sys.stderr.close()
                sys.exit(1)
            raise click.ClickException(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, CrailError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.group(cls=CliGroup)
@click.option("--conf", type=click.Path(dir_okay=False), envvar="CRAILPY_CONF",
              help="Configuration file (TOML); default: $CRAILPY_CONF.")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.pass_context
def main(ctx: click.Context, conf: str | None, verbose: bool) -> None:
    """crailpy: a store for the ephemeral data of analytics jobs."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx.obj = configuration.load(conf)
    except CrailError as exc:
        raise click.ClickException(str(exc)) from None


# ---- daemons ----

def _run_until_signalled(start: Callable[[], Any], stop: Callable[[], None]) -> None:
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    start()
    while not stopped.wait(0.5):  # a timed wait: a signal can be lost in an endless one
        pass
    stop()


@main.command()
@click.option("--address", help="host:port to listen on [namenode.address].")
@click.option("--block-size", help="Block size, e.g. 1MiB [namenode.block_size].")
@click.option("--heartbeat-interval", type=float, help="Seconds between datanode heartbeats.")
@click.option("--dead-after", type=float, help="Seconds of silence before a datanode is dead.")
@click.pass_obj
def namenode(cfg: configuration.Config, **flags: Any) -> None:
    """Run a namenode in the foreground."""
    from crailpy.namenode.server import Namenode

    node = Namenode(cfg.override("namenode", **flags))
    _run_until_signalled(node.start, node.stop)


@main.command()
@click.option("--tier", type=click.Choice(["dram", "nvmf", "file"]), help="What backs the blocks.")
@click.option("--address", help="host:port to serve on; port 0 picks one [datanode.address].")
@click.option("--capacity", help="Bytes to offer, e.g. 1GiB [datanode.capacity].")
@click.option("--location-class", type=int, help="Location class (host affinity).")
@click.option("--path", help="Backing file or block device of the nvmf and file tiers.")
@click.option("--nvmf-backend", type=click.Choice(["builtin", "nvmet", "spdk"]),
              help="The NVMe/TCP target of the nvmf tier [datanode.nvmf_backend].")
@click.option("--nvmf-port", type=int, help="TCP port of the NVMe/TCP listener [datanode.nvmf_port].")
@click.option("--nvmf-nqn", help="NQN of the subsystem the nvmf tier exports [datanode.nvmf_nqn].")
@click.option("--rdma", type=click.Choice(["auto", "on", "off"]),
              help="Serve the DRAM pool by RDMA too [datanode.rdma].")
@click.option("--namenode", "namenode_address", help="Namenode host:port [namenode.address].")
@click.pass_obj
def datanode(cfg: configuration.Config, namenode_address: str | None, **flags: Any) -> None:
    """Run a datanode in the foreground."""
    from crailpy.datanode import Datanode

    cfg = cfg.override("namenode", address=namenode_address).override("datanode", **flags)
    node = Datanode(cfg)
    _run_until_signalled(node.start, node.stop)


# ---- fs ----

def _split_target(target: str) -> tuple[str | None, str]:
    """'crail://host:port/path' -> ('host:port', '/path'); '/path' -> (None, '/path')."""
    if target.startswith("crail://"):
        rest = target[len("crail://"):]
        address, slash, path = rest.partition("/")
        if not address:
            raise InvalidArgument(f"no namenode address in {target!r}")
        return address, "/" + path
    if not target.startswith("/"):
        raise InvalidArgument(f"crailpy paths are absolute (/path or crail://host:port/path): "
                              f"{target!r}")
    return None, target


class Fs:
    """The store the fs commands talk to, opened on first use."""

    def __init__(self, cfg: configuration.Config, address: str | None) -> None:
        self.cfg = cfg
        self.address = address
        self._named: str | None = None  # the namenode a crail:// path named
        self._store: Store | None = None

    def path(self, target: str) -> str:
        """The path of `target`; a crail:// target also chooses the namenode."""
        address, path = _split_target(target)
        if address is not None:
            opened = self._store.address if self._store is not None else None
            if address != (self._named or opened or address):
                raise InvalidArgument("all paths of one command must name the same namenode")
            self._named = self.address = address
        return path

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.address, self.cfg)
        return self._store


@main.group(cls=CliGroup)
@click.option("--namenode", "address", help="Namenode host:port [namenode.address].")
@click.pass_context
def fs(ctx: click.Context, address: str | None) -> None:
    """File commands against a namenode (paths: /path or crail://host:port/path)."""
    fs_obj = Fs(ctx.obj, address)
    ctx.obj = fs_obj
    ctx.call_on_close(lambda: fs_obj._store and fs_obj._store.close())


_TYPE_CHAR = {"directory": "d", "file": "-", "multifile": "m", "table": "t"}


def _ls_line(status: FileStatus, long: bool) -> str:
    if not long:
        return status.path
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.mtime_ns / 1e9))
    return f"{_TYPE_CHAR[status.type]} {status.size:>14} {status.storage_class:<6} {when} {status.path}"


@fs.command()
@click.option("-l", "long", is_flag=True, help="Type, size, storage class and time.")
@click.option("-R", "recursive", is_flag=True, help="List subdirectories too.")
@click.argument("paths", nargs=-1)
@click.pass_obj
def ls(fs_obj: Fs, long: bool, recursive: bool, paths: tuple[str, ...]) -> None:
    """List directories and tables (a file lists itself)."""
    for target in paths or ("/",):
        path = fs_obj.path(target)
        status = fs_obj.store.stat(path)
        if status.type not in ("directory", "table"):
            click.echo(_ls_line(status, long))
            continue
        entries = fs_obj.store.walk(path) if recursive else fs_obj.store.list(path)
        for entry in entries:
            click.echo(_ls_line(entry, long))


@fs.command()
@click.option("-p", "parents", is_flag=True, help="Make parents as needed; no error if it exists.")
@click.option("--storage-class", help="Storage class of the directory (inherited below it).")
@click.option("--table", is_flag=True, help="Make a table (key -> small value) instead.")
@click.option("--multifile", is_flag=True, help="Make a multifile (many writers append parts).")
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
def mkdir(fs_obj: Fs, parents: bool, storage_class: str | None, table: bool, multifile: bool,
          paths: tuple[str, ...]) -> None:
    """Make directories (or tables, or multifiles)."""
    for target in paths:
        path = fs_obj.path(target)
        if table:
            fs_obj.store.create_table(path, parents=parents)
        elif multifile:
            fs_obj.store.create_multifile(path, storage_class, parents=parents)
        else:
            fs_obj.store.mkdir(path, parents=parents, storage_class=storage_class)


def _progress(total: int, label: str) -> Any:
    """A rich progress bar on a terminal for large transfers; a no-op otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    console = Console(stderr=True)
    progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=console, transient=True,
                        disable=total <= PROGRESS_OVER or not console.is_terminal)
    return progress, progress.add_task(label, total=total)


def _copy(src: BinaryIO, write: Callable[[memoryview], Any], total: int | None, label: str) -> int:
    """Stream `src` to `write` through one reused buffer."""
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    progress, task = _progress(total or 0, label)
    moved = 0
    with progress:
        while True:
            n = src.readinto(view)
            if not n:
                return moved
            write(view[:n])
            moved += n
            progress.update(task, advance=n)


def _put_file(store: Store, local: str, remote: str, force: bool, storage_class: str | None) -> None:
    if local != "-" and storage_class is None and os.path.getsize(local) <= store.config.client.inline_max:
        with open(local, "rb") as f:  # small enough for the namenode to hold: one round trip
            store.put(remote, f.read(), overwrite=force)
        return
    with store.create(remote, storage_class=storage_class, overwrite=force) as writer:
        if local == "-":
            _copy(sys.stdin.buffer, writer.write, None, "stdin")
        else:
            with open(local, "rb", buffering=0) as f:
                _copy(f, writer.write, os.fstat(f.fileno()).st_size, os.path.basename(local))


def _remote_is_dir(store: Store, path: str) -> bool:
    try:
        return store.stat(path).type in ("directory", "table")
    except FileNotFoundError:
        return False


@fs.command()
@click.option("-f", "force", is_flag=True, help="Replace files that exist.")
@click.option("--storage-class", help="Storage class of the new files.")
@click.argument("sources", nargs=-1, required=True)
@click.argument("dest")
@click.pass_obj
def put(fs_obj: Fs, force: bool, storage_class: str | None, sources: tuple[str, ...], dest: str) -> None:
    """Copy local files or directories (or - for stdin) into crailpy."""
    dest_path = fs_obj.path(dest)
    store = fs_obj.store
    into_dir = _remote_is_dir(store, dest_path)
    if len(sources) > 1 and not into_dir:
        raise InvalidArgument(f"{dest_path} is not a directory (needed for several sources)")
    for source in sources:
        target = dest_path
        if into_dir and source != "-":
            target = f"{dest_path.rstrip('/')}/{os.path.basename(source.rstrip('/'))}"
        if source != "-" and os.path.isdir(source):
            store.mkdir(target, parents=True)
            for root, dirs, files in os.walk(source):
                rel = os.path.relpath(root, source)
                base = target if rel == "." else f"{target}/{rel}"
                for d in dirs:
                    store.mkdir(f"{base}/{d}", parents=True)
                for name in files:
                    _put_file(store, os.path.join(root, name), f"{base}/{name}", force, storage_class)
        else:
            if source != "-" and not os.path.exists(source):
                raise FileNotFoundError(f"no such local file: {source}")
            _put_file(store, source, target, force, storage_class)


def _get_file(store: Store, remote: str, local: str, kind: str) -> None:
    """Copy a file, or the stream of a multifile's parts, to `local` (- for stdout)."""
    with store.open_multifile(remote) if kind == "multifile" else store.open(remote) as reader:
        out = sys.stdout.buffer if local == "-" else open(local, "wb")
        try:
            _copy(reader, out.write, reader.size, os.path.basename(remote))
            out.flush()
        finally:
            if local != "-":
                out.close()


@fs.command()
@click.argument("source")
@click.argument("dest", default="-")
@click.pass_obj
def get(fs_obj: Fs, source: str, dest: str) -> None:
    """Copy a file or directory out of crailpy (to - for stdout)."""
    path = fs_obj.path(source)
    store = fs_obj.store
    status = store.stat(path)
    if dest != "-" and os.path.isdir(dest):
        dest = os.path.join(dest, os.path.basename(path.rstrip("/")) or "root")
    if status.type in ("directory", "table"):
        if dest == "-":
            raise InvalidArgument(f"{path} is a {status.type}; give a local directory to copy it to")
        os.makedirs(dest, exist_ok=True)
        for entry in store.walk(path):
            local = os.path.join(dest, os.path.relpath(entry.path, path))
            if entry.type in ("directory", "table"):
                os.makedirs(local, exist_ok=True)
            else:
                _get_file(store, entry.path, local, entry.type)
        return
    _get_file(store, path, dest, status.type)


@fs.command()
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
def cat(fs_obj: Fs, paths: tuple[str, ...]) -> None:
    """Print files (and multifiles) to stdout."""
    for target in paths:
        path = fs_obj.path(target)
        _get_file(fs_obj.store, path, "-", fs_obj.store.stat(path).type)


@fs.command()
@click.option("-r", "recursive", is_flag=True, help="Remove directories and their contents.")
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
def rm(fs_obj: Fs, recursive: bool, paths: tuple[str, ...]) -> None:
    """Remove files, and with -r directories."""
    for target in paths:
        path = fs_obj.path(target)
        fs_obj.store.delete(path, recursive=recursive)


@fs.command()
@click.argument("source")
@click.argument("dest")
@click.pass_obj
def mv(fs_obj: Fs, source: str, dest: str) -> None:
    """Rename atomically (into DEST if it is a directory)."""
    src, dst = fs_obj.path(source), fs_obj.path(dest)
    if _remote_is_dir(fs_obj.store, dst):
        dst = f"{dst.rstrip('/')}/{src.rstrip('/').rsplit('/', 1)[-1]}"
    fs_obj.store.rename(src, dst)


@fs.command(name="stat")
@click.argument("paths", nargs=-1, required=True)
@click.pass_obj
def stat_command(fs_obj: Fs, paths: tuple[str, ...]) -> None:
    """Show a node: type, size, classes and where its blocks live."""
    for target in paths:
        path = fs_obj.path(target)
        s = fs_obj.store.stat(path)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.mtime_ns / 1e9))
        size = f"{s.size} entries" if s.type in ("directory", "table") else f"{s.size} bytes"
        click.echo(f"path: {s.path}\ntype: {s.type}\nsize: {size}\nstorage class: {s.storage_class}\n"
                   f"location class: {'any' if s.location_class < 0 else s.location_class}\n"
                   f"block size: {s.block_size}\nmodified: {when}\nid: {s.id}")
        if s.type == "file":
            counts = collections.Counter(loc[1:] for loc in fs_obj.store.block_locations(path))
            click.echo(f"blocks: {sum(counts.values())}")
            for (address, cls, transport), n in sorted(counts.items()):
                click.echo(f"  {n:>6} on {address} ({cls}, {transport})")


@fs.command()
@click.option("-h", "human_sizes", is_flag=True, help="Sizes in KiB, MiB, GiB.")
@click.argument("paths", nargs=-1)
@click.pass_obj
def du(fs_obj: Fs, human_sizes: bool, paths: tuple[str, ...]) -> None:
    """Bytes stored below each path."""
    for target in paths or ("/",):
        path = fs_obj.path(target)
        s = fs_obj.store.stat(path)
        if s.type in ("directory", "table"):
            total = sum(e.size for e in fs_obj.store.walk(path) if e.type in ("file", "multifile"))
        else:
            total = s.size
        click.echo(f"{human(total) if human_sizes else total}\t{path}")


@fs.command()
@click.pass_obj
def df(fs_obj: Fs) -> None:
    """Capacity, used and free bytes per storage class (and of the namenode's memory for
    small objects, "inline") and per datanode."""
    classes, nodes = fs_obj.store.usage()
    click.echo(f"{'class':<8} {'capacity':>12} {'used':>12} {'freeing':>12} {'free':>12} "
               f"{'use%':>5}")
    for c in [*classes, fs_obj.store.inline_usage()]:
        pct = 100 * c.used / c.capacity if c.capacity else 0
        click.echo(f"{c.name:<8} {human(c.capacity):>12} {human(c.used):>12} "
                   f"{human(c.freeing):>12} {human(c.capacity - c.used - c.freeing):>12} "
                   f"{pct:>4.0f}%")
    click.echo(f"\n{'datanode':<10} {'address':<22} {'class':<6} {'state':<5} {'transports':<10} "
               f"{'using':<5} {'capacity':>12} {'used':>12}")
    for d in nodes:
        click.echo(f"{d.id:<10} {d.address:<22} {d.storage_class:<6} "
                   f"{'up' if d.alive else 'dead':<5} {d.transports:<10} {d.transport:<5} "
                   f"{human(d.capacity):>12} {human(d.used):>12}")


# ---- rdma ----

@main.group(cls=CliGroup)
def rdma() -> None:
    """RDMA devices and whether crailpy can use them."""


@rdma.command()
def info() -> None:
    """List RDMA devices: ports, state, MTU, GIDs; and whether crailpy's RDMA path works here."""
    from crailpy import rdma_devices, verbs

    found = rdma_devices.devices()
    for device in found:
        click.echo(f"{device.name}: node GUID {device.node_guid}")
        for p in device.ports:
            click.echo(f"  port {p.number}: {p.state}, {p.link_layer}, MTU {p.active_mtu} "
                       f"(max {p.max_mtu})")
            for index, gid in p.gids:
                click.echo(f"    GID[{index}] {gid}")
    if not found:
        click.echo("no RDMA devices")
    reason = verbs.unavailable()
    click.echo(f"crailpy rdma transport: {'usable' if reason is None else 'not usable: ' + reason}")


# ---- spark ----

@main.group(cls=CliGroup)
def spark() -> None:
    """The Spark shuffle plugin (docs/spark.md)."""


@spark.command()
def jar() -> None:
    """Build the shim's jar if these sources have none yet, and print its path."""
    from crailpy.spark import jar as shim

    click.echo(str(shim.build()))


# ---- cluster ----

@main.group(cls=CliGroup)
def cluster() -> None:
    """A local cluster: a namenode and datanodes as background processes."""


@cluster.command()
@click.option("--state-dir", help="Where pid files, logs and flash files go [cluster.state_dir].")
@click.option("--port", type=int, help="Namenode port (default: from namenode.address).")
@click.option("--dram-datanodes", type=int, help="How many DRAM datanodes.")
@click.option("--flash-datanodes", type=int, help="How many file-backed flash datanodes.")
@click.option("--dram-capacity", help="Capacity of each DRAM datanode, e.g. 256MiB.")
@click.option("--flash-capacity", help="Capacity of each flash datanode, e.g. 1GiB.")
@click.option("--datanode-port", type=int, help="First datanode port (0: any free ports).")
@click.pass_obj
def start(cfg: configuration.Config, port: int | None, **flags: Any) -> None:
    """Start a namenode and datanodes in the background."""
    cfg = cfg.override("cluster", **flags)
    if port is not None:
        host = cfg.namenode.address.rpartition(":")[0] or "127.0.0.1"
        cfg = cfg.override("namenode", address=f"{host}:{port}")
    info = cluster_ops.start(cfg)
    click.echo(f"namenode at {info['namenode']}; {len(info['datanodes'])} datanodes; "
               f"state in {info['state_dir']}")


@cluster.command()
@click.option("--state-dir", help="State directory of the cluster [cluster.state_dir].")
@click.pass_obj
def stop(cfg: configuration.Config, state_dir: str | None) -> None:
    """Stop the cluster's processes."""
    stopped = cluster_ops.stop(cfg.override("cluster", state_dir=state_dir))
    click.echo(f"stopped {stopped} processes")


@cluster.command()
@click.option("--state-dir", help="State directory of the cluster [cluster.state_dir].")
@click.pass_obj
def status(cfg: configuration.Config, state_dir: str | None) -> None:
    """Show the cluster's processes and whether they run."""
    cfg = cfg.override("cluster", state_dir=state_dir)
    rows = cluster_ops.status(cfg)
    if not rows:
        raise click.ClickException(f"no cluster in {configuration.state_dir(cfg)}")
    for name, pid, alive, address in rows:
        click.echo(f"{name:<16} pid {pid:<8} {'running' if alive else 'stopped':<8} {address}")
    if not all(alive for _, _, alive, _ in rows):
        sys.exit(1)


# ---- iobench ----

@main.command()
@click.option("-t", "test", type=click.Choice(iobench_ops.TESTS), default="all", show_default=True)
@click.option("-s", "size", default="1MiB", show_default=True, help="Bytes per file.")
@click.option("-k", "count", type=int, default=100, show_default=True, help="Files (operations).")
@click.option("-f", "directory", default="/iobench", show_default=True, help="Directory to use.")
@click.option("--storage-class", help="Storage class of the files.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
@click.option("--namenode", "address", help="Namenode host:port [namenode.address].")
@click.pass_obj
def iobench(cfg: configuration.Config, test: str, size: str, count: int, directory: str,
            storage_class: str | None, as_json: bool, address: str | None) -> None:
    """Measure write, read, create and lookup like Crail's iobench."""
    nbytes = configuration.parse_size(size)
    if count < 1:
        raise InvalidArgument("-k must be at least 1")
    with Store(address, cfg) as store:
        for result in iobench_ops.run(store, test, nbytes, count, directory, storage_class):
            click.echo(result.to_json() if as_json else result.render())


if __name__ == "__main__":
    main()
