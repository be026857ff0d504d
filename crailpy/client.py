"""The Python API: `connect()` gives a `Store` with file, directory, multifile and table calls.

A `Store` holds one namenode connection and one endpoint per datanode it has
talked to; it is safe to share between threads. Paths are absolute, as in
`/data/a.bin`.
"""

from __future__ import annotations

import builtins
import collections
import itertools
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NamedTuple

from crailpy import config as configuration
from crailpy.channel import Channel
from crailpy.errors import BlockLost, CrailError, InvalidArgument, NoSpace, Unreachable, WrongType
from crailpy.files import (
    MultifileReader, Reader, Writer, as_bytes_view, get_many, held_inline, put_many,
)
from crailpy.netio import parse_address
from crailpy.protocol import messages as m
from crailpy.protocol.messages import ANY_CLASS, EXACT, EXIST_OK, OVERWRITE, PARENTS, NodeType
from crailpy.transports import Endpoint
from crailpy.transports.tcp import TcpEndpoint

if TYPE_CHECKING:
    import concurrent.futures

TRANSPORTS = ("auto", "tcp", "rdma")


class FileStatus(NamedTuple):
    path: str
    type: str  # "directory", "file", "multifile" or "table"
    size: int  # bytes; for directories and tables, the number of entries
    storage_class: str
    location_class: int
    mtime_ns: int
    id: int
    block_size: int


_TYPE_NAMES = {t: t.name.lower() for t in NodeType}  # FileStatus.type of each NodeType


class ClassUsage(NamedTuple):
    name: str
    capacity: int
    used: int  # held by files
    freeing: int  # freed, reusable once its key changed (docs/rdma.md): within a heartbeat


class BlockLocation(NamedTuple):
    index: int
    address: str  # the datanode's host:port
    storage_class: str
    transport: str  # "rdma", "tcp" or "nvmf": how this store moves the block


class DatanodeUsage(NamedTuple):
    id: int
    address: str
    storage_class: str
    alive: bool
    transports: str  # what the datanode offers
    transport: str  # what this store uses with it
    capacity: int
    used: int


class Store:
    def __init__(self, address: str | None = None, config: configuration.Config | None = None) -> None:
        self.config = config or configuration.load()
        self.address = address or self.config.namenode.address
        self._host_port = parse_address(self.address)
        self._lock = threading.Lock()
        self._namenode: Channel | None = None
        self._endpoints: dict[tuple[str, int, int], Endpoint] = {}  # by host, port, datanode id
        self._class_names: builtins.list[str] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._channel()  # fail now, clearly, if the namenode is not there

    # ---- connections ----

    def _call(self, msg: Any) -> Any:
        """One namenode RPC; a lost connection is opened again on the next call."""
        return self._channel().call(msg)

    def _allocating(self, msg: Any) -> Any:
        """A namenode call that takes space, waiting for freed space as below."""
        return self._waiting_for_space(self._call, msg)

    def _waiting_for_space(self, fn: Any, *args: Any) -> Any:
        """`fn(*args)`, again every 20 ms while it raises NoSpace and freed space is on its
        way back (it returns once its key region's key has changed, within about a
        heartbeat), up to `io_timeout`: a write that fits a moment later should not fail.
        With nothing coming back, NO_SPACE stands. `fn` must hold nothing when it raises."""
        deadline = time.monotonic() + self.config.client.io_timeout
        last_try = False
        while True:
            try:
                return fn(*args)
            except NoSpace:
                if last_try or time.monotonic() > deadline:
                    raise
                # Nothing freeing now: it may all have come back since the refusal, so one
                # more try, at once, and that one's answer stands.
                last_try = not any(c.freeing for c in self._call(m.StatFs()).classes)
                if not last_try:
                    time.sleep(0.02)

    def _channel(self) -> Channel:
        channel = self._namenode
        if channel is not None and channel.broken is None:
            return channel  # the common case, without the lock
        with self._lock:
            if self._namenode is None or self._namenode.broken is not None:
                self._namenode = Channel.for_client(self._host_port, self.config.client,
                                                    "namenode")
            return self._namenode

    def _session_open(self) -> bool:
        """Whether the namenode connection that holds our open files is still up."""
        return self._namenode is not None and self._namenode.broken is None

    def _endpoint(self, datanode: m.DatanodeInfo, path: str, index: int) -> Endpoint:
        endpoint = self._endpoints.get((datanode.host, datanode.port, datanode.id))
        if endpoint is not None and datanode.alive and not endpoint.broken:
            return endpoint  # the common case, without the lock
        if not datanode.alive:
            raise BlockLost(f"{path}: block {index} lived on datanode {datanode.id} "
                            f"({datanode.host}:{datanode.port}), which is dead; the data is lost")
        key = (datanode.host, datanode.port, datanode.id)
        with self._lock:
            endpoint = self._endpoints.get(key)
            if endpoint is None or endpoint.broken:
                if endpoint is not None:
                    endpoint.close()
                try:
                    endpoint = self._connect(datanode)
                except Unreachable as exc:
                    raise Unreachable(f"{path}: block {index}: {exc}") from None
                self._endpoints[key] = endpoint
            return endpoint

    def _connect(self, datanode: m.DatanodeInfo) -> Endpoint:
        transport, reason = self._choose(datanode)
        if transport == "nvmf":
            from crailpy.transports.nvmf import NvmfEndpoint

            endpoint: Endpoint = NvmfEndpoint(datanode, self.config.client)
            _log_transport(datanode, f"nvmf, subsystem {datanode.nvmf.nqn} on port {datanode.nvmf.port}")
            return endpoint
        if transport == "rdma":
            from crailpy.transports.rdma import RdmaEndpoint

            try:
                endpoint = RdmaEndpoint(datanode, self.config.client)
            except Unreachable as exc:
                if self.config.client.transport == "rdma":
                    raise
                # auto: a datanode that offers RDMA on an address our device cannot route to
                # (or a network without RDMA between us) still serves over TCP.
                transport, reason = "tcp", str(exc)
        elif self.config.client.transport == "rdma":
            raise Unreachable(f"datanode {datanode.id} ({datanode.host}:{datanode.port}): "
                              f"cannot use rdma: {reason}")
        if transport == "tcp":
            endpoint = TcpEndpoint(datanode.host, datanode.port, self.config.client)
        _log_transport(datanode, transport + (f" (not rdma: {reason})" if reason else ""))
        return endpoint

    def _choose(self, datanode: m.DatanodeInfo) -> tuple[str, str]:
        """The transport for `datanode`'s blocks, and why not rdma: nvmf for a flash datanode
        that exports an NVMe namespace (its only data path), else `client.transport`."""
        choice = self.config.client.transport
        if choice not in TRANSPORTS:
            raise InvalidArgument(f"client.transport is one of {', '.join(TRANSPORTS)}, not {choice!r}")
        if datanode.transports & m.Transport.NVMF:
            return "nvmf", ""
        if choice == "tcp":
            return "tcp", "client.transport is tcp"
        if not datanode.transports & m.Transport.RDMA:
            return "tcp", "the datanode does not offer it"
        from crailpy import verbs  # only here: a TCP-only client never loads cffi

        reason = verbs.unavailable()
        return ("tcp", reason) if reason else ("rdma", "")

    def transport_for(self, datanode: m.DatanodeInfo) -> str:
        """The transport this store moves `datanode`'s blocks with: "rdma", "tcp" or "nvmf" (that of
        its connection if it has one, else the one it would choose)."""
        with self._lock:
            endpoint = self._endpoints.get((datanode.host, datanode.port, datanode.id))
        return endpoint.name if endpoint is not None else self._choose(datanode)[0]

    def close(self) -> None:
        with self._lock:
            if self._namenode is not None:
                self._namenode.close()
            for endpoint in self._endpoints.values():
                endpoint.close()
            self._endpoints.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- namespace ----

    def mkdir(self, path: str, parents: bool = False, exist_ok: bool = False,
              storage_class: str | int | None = None, location_class: int | None = None) -> None:
        self._create(path, NodeType.DIRECTORY, storage_class, location_class,
                     _container_flags(exist_ok, parents))

    def create_table(self, path: str, exist_ok: bool = False, parents: bool = False) -> None:
        """A table: keys are its files, made by `put`; `parents` implies `exist_ok`, as mkdir -p."""
        self._create(path, NodeType.TABLE, None, None, _container_flags(exist_ok, parents))

    def create_multifile(self, path: str, storage_class: str | int | None = None,
                         exist_ok: bool = False, parents: bool = False) -> None:
        """A multifile: many writers append parts (`append_part`), a reader streams them all."""
        self._create(path, NodeType.MULTIFILE, storage_class, None,
                     _container_flags(exist_ok, parents))

    def create(self, path: str, storage_class: str | int | None = None,
               location_class: int | None = None, overwrite: bool = False,
               parents: bool = False, size_hint: int = 0, exact: bool = False) -> Writer:
        """A writer for a new file; it becomes visible when the writer closes.

        Blocks for the first `size_hint` bytes come with the create reply, so a
        file of known size needs no further allocation round trip. With `exact`,
        the file will hold at most `size_hint` bytes. Either way a file takes
        whole blocks and, for its last bytes, only the space they need. (A hint
        under a block without `exact` reserves nothing: such a file gets its
        chunk when it closes.)
        """
        flags = (OVERWRITE if overwrite else 0) | (PARENTS if parents else 0) | (EXACT if exact else 0)
        created = self._create(path, NodeType.FILE, storage_class, location_class, flags, size_hint)
        return Writer(self, path, created, limit=size_hint if exact else None)

    def append_part(self, path: str, location_class: int | None = None,
                    size_hint: int = 0, exact: bool = False) -> Writer:
        """A writer for one more part of the multifile at `path`; many may write at once."""
        created = self._allocating(m.CreatePart(_class_or_any(location_class), EXACT if exact else 0,
                                          size_hint, path))
        return Writer(self, f"{path} (part)", created, limit=size_hint if exact else None)

    def open(self, path: str) -> Reader:
        return Reader(self, path, self._lookup_file(path))

    def _lookup_file(self, path: str) -> m.Located:
        """A file's LOOKUP, with its first blocks or, held by the namenode, its bytes."""
        located = self._call(m.Lookup(max(self.config.client.lookup_blocks, 1), path))
        if located.info.type != NodeType.FILE:
            kind = NodeType(located.info.type).name.lower()
            hint = " (open_multifile reads it)" if kind == "multifile" else ""
            raise WrongType(f"{path} is a {kind}, not a file{hint}")
        return located

    def open_multifile(self, path: str) -> MultifileReader:
        located = self._call(m.Lookup(0, path))
        if located.info.type != NodeType.MULTIFILE:
            raise WrongType(f"{path} is not a multifile")
        return MultifileReader(self, path, located.info, located.parts)

    def stat(self, path: str) -> FileStatus:
        return self._status(path, self._call(m.Lookup(0, path)).info)

    def exists(self, path: str) -> bool:
        try:
            self.stat(path)
        except FileNotFoundError:
            return False
        return True

    def list(self, path: str) -> builtins.list[FileStatus]:
        """The entries of a directory or table, sorted by name."""
        out, start = [], 0
        base = path.rstrip("/")
        while True:
            listing = self._call(m.ListDir(start, 1000, path))
            out.extend(self._status(f"{base}/{e.name}", e.info) for e in listing.entries)
            start += len(listing.entries)
            if not listing.more:
                return sorted(out, key=lambda s: s.path)

    def walk(self, path: str) -> Iterator[FileStatus]:
        """Every node below `path` (depth first), not `path` itself."""
        for status in self.list(path):
            yield status
            if status.type in ("directory", "table"):
                yield from self.walk(status.path)

    def delete(self, path: str, recursive: bool = False) -> None:
        self._call(m.Delete(int(recursive), path))

    def rename(self, src: str, dst: str) -> None:
        self._call(m.Rename(src, dst))

    # ---- small objects ----

    def put(self, path: str, value: Any, overwrite: bool = True) -> None:
        """Store `value` at `path` (a key in a table, or a file); the last put wins, and
        without `overwrite` a file that exists (outside a table) is an error.

        The namenode keeps objects of up to `client.inline_max` bytes itself (PUT):
        one round trip, and a get of them is one too. One it refuses (over its own
        limit, or its memory for them in use) goes to datanodes as a larger one does.
        """
        view = as_bytes_view(value)
        if len(view) <= self.config.client.inline_max:
            try:
                self._call(m.Put(OVERWRITE if overwrite else 0, path, view))
                return
            except NoSpace:
                pass
        with self.create(path, overwrite=overwrite, size_hint=len(view), exact=True) as f:
            f.write(view)

    def get(self, path: str) -> bytes:
        located = self._lookup_file(path)
        if held_inline(located):
            return located.data
        with Reader(self, path, located) as f:
            return f.read()

    # ---- many at once ----

    def pipeline(self, requests: Iterable[Any], inflight: int = 64,
                 return_exceptions: bool = False) -> builtins.list[Any]:
        """Send namenode requests (`crailpy.protocol.messages`) with up to `inflight` of them
        in flight on one connection; the replies, in request order. The first error raises,
        or with `return_exceptions` takes its request's place in the replies."""
        channel = self._channel()
        window: collections.deque = collections.deque()
        out: builtins.list[Any] = []

        def settle(pending: Any) -> None:
            try:
                out.append(pending.result())
            except CrailError as exc:
                if not return_exceptions:
                    raise
                out.append(exc)

        # Requests leave in batches of up to half the window, each in one system call, and
        # the replies of the older half are read meanwhile.
        batch_size = max(1, inflight // 2)
        batch: builtins.list[Any] = []
        for request in itertools.chain(requests, [None]):
            if request is not None:
                batch.append(request)
                if len(batch) < batch_size:
                    continue
            while window and len(window) + len(batch) > inflight:
                settle(window.popleft())
            window.extend(channel.submit_many(batch))
            batch = []
        while window:
            settle(window.popleft())
        return out

    def stat_many(self, paths: builtins.list[str], inflight: int = 64) -> builtins.list[FileStatus]:
        replies = self.pipeline((m.Lookup(0, p) for p in paths), inflight)
        return [self._status(p, r.info) for p, r in zip(paths, replies)]

    def delete_many(self, paths: builtins.list[str], recursive: bool = False, inflight: int = 64) -> None:
        self.pipeline((m.Delete(int(recursive), p) for p in paths), inflight)

    def put_many(self, items: dict[str, Any], inflight: int = 64) -> None:
        """`put` of every path -> value, creates, writes and commits each pipelined. Like
        `put`, it waits for freed space that is coming back (a create refused gives back
        what the others took before it raises)."""
        self._waiting_for_space(put_many, self, items, inflight)

    def get_many(self, paths: builtins.list[str], inflight: int = 64) -> builtins.list[bytes]:
        return get_many(self, paths, inflight)

    # ---- futures ----

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future:
        """Run `fn(store, *args)` on the store's thread pool, e.g. `store.submit(Store.get, p)`.

        Each call keeps its own block transfers in flight, so several calls at
        once keep transfers going to many datanodes.
        """
        import concurrent.futures  # here: it costs a short-lived client 8 ms to import

        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.config.client.inflight, thread_name_prefix="crailpy")
        return self._executor.submit(fn, self, *args)

    def put_async(self, path: str, value: Any) -> concurrent.futures.Future:
        return self.submit(Store.put, path, value)

    def get_async(self, path: str) -> concurrent.futures.Future:
        return self.submit(Store.get, path)

    # ---- cluster ----

    def usage(self) -> tuple[builtins.list[ClassUsage], builtins.list[DatanodeUsage]]:
        """Capacity and use per storage class and per datanode (what `crailpy fs df` shows)."""
        reply = self._call(m.StatFs())
        names = [c.name for c in reply.classes]
        classes = [ClassUsage(c.name, c.capacity, c.used, c.freeing) for c in reply.classes]
        nodes = [DatanodeUsage(d.info.id, f"{d.info.host}:{d.info.port}",
                               names[d.info.storage_class], bool(d.info.alive),
                               _transports(d.info.transports), self.transport_for(d.info),
                               d.capacity, d.used)
                 for d in reply.datanodes]
        return classes, nodes

    def inline_usage(self) -> ClassUsage:
        """Capacity and use of the namenode's memory for the small objects it holds (`put`)."""
        reply = self._call(m.StatFs())
        return ClassUsage("inline", reply.inline_capacity, reply.inline_used, 0)

    # ---- helpers ----

    def _create(self, path: str, node_type: NodeType, storage_class: str | int | None,
                location_class: int | None, flags: int, reserve: int = 0) -> m.Created:
        cls = self._class_number(storage_class)
        return self._allocating(m.Create(node_type, cls, _class_or_any(location_class), flags,
                                         reserve, path))

    def _classes(self) -> builtins.list[str]:
        if self._class_names is None:
            self._class_names = [c.name for c in self._call(m.StatFs()).classes]
        return self._class_names

    def _class_number(self, storage_class: str | int | None) -> int:
        if storage_class is None:
            return ANY_CLASS
        names = self._classes()
        if isinstance(storage_class, str):
            if storage_class not in names:
                raise InvalidArgument(f"unknown storage class {storage_class!r} "
                                      f"(classes: {', '.join(names)})")
            return names.index(storage_class)
        if not 0 <= storage_class < len(names):
            raise InvalidArgument(f"storage class {storage_class} is not configured")
        return storage_class

    def _status(self, path: str, info: m.NodeInfo) -> FileStatus:
        names = self._classes()
        cls = names[info.storage_class] if info.storage_class < len(names) else str(info.storage_class)
        return FileStatus(path, _TYPE_NAMES.get(info.type) or str(info.type), info.size, cls,
                          info.location_class, info.mtime_ns, info.id, info.block_size)

    def block_locations(self, path: str) -> builtins.list[BlockLocation]:
        """Where every block of a file lives, and how this store reaches it."""
        reader = self.open(path)
        names = self._classes()
        count = 0 if reader.inline is not None else -(-reader.size // reader.info.block_size)
        out = []
        for index in range(count):
            datanode, _ = reader._location(index)
            out.append(BlockLocation(index, f"{datanode.host}:{datanode.port}",
                                     names[datanode.storage_class], self.transport_for(datanode)))
        return out


def _log_transport(datanode: m.DatanodeInfo, how: str) -> None:
    """Say which transport serves `datanode`, if the program uses `logging`: one that never
    imported it has no handler that shows INFO, and importing it would cost a short-lived
    client a tenth of its life."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).info("datanode %d (%s:%d): %s", datanode.id, datanode.host,
                                         datanode.port, how)


def _container_flags(exist_ok: bool, parents: bool) -> int:
    return (PARENTS | EXIST_OK if parents else 0) | (EXIST_OK if exist_ok else 0)


def _class_or_any(value: int | None) -> int:
    return ANY_CLASS if value is None else value


def _transports(mask: int) -> str:
    return ",".join(t.name.lower() for t in m.Transport if mask & t)


def connect(address: str | None = None, config: configuration.Config | None = None) -> Store:
    """A store connected to the namenode at `address` (default: the configured one)."""
    return Store(address, config)


__all__ = ["connect", "Store", "FileStatus", "as_bytes_view"]
