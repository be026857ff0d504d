"""The datanode daemon: serves a block store and keeps the namenode informed.

The tier decides what serves the blocks: `MemoryStore` for DRAM (over TCP, and
RDMA where a device is), `FileStore` for the file-backed flash tier (over TCP),
and an NVMe/TCP export for the nvmf flash tier (`datanode_nvmf.export`), which
clients reach directly; there the datanode's own port only answers PING. The
datanode knows nothing of files or blocks; it serves byte ranges of its region
to whoever names its current id, and refuses others, so a client holding
locations from before a restart gets an error, not other bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from typing import Any, Iterator, Protocol

from crailpy.channel import Channel
from crailpy.config import Config, state_dir
from crailpy.datanode_nvmf import export
from crailpy.datanode_nvmf.filestore import FileStore
from crailpy.datanode_rdma.memory import MemoryStore
from crailpy.errors import CrailError, InvalidArgument, OutOfRange, Stale, UnknownOperation
from crailpy.key_regions import Admitted, KeyRegions
from crailpy.netio import SocketReader, parse_address
from crailpy.protocol import frames
from crailpy.protocol import messages as m
from crailpy.protocol.wire import MAX_ITEMS
from crailpy.serving import Connection, Server

log = logging.getLogger(__name__)

# tier name -> storage class name it serves
TIERS = {"dram": "dram", "nvmf": "flash", "file": "flash"}
RDMA_MODES = ("auto", "on", "off")


class BlockStore(Protocol):
    capacity: int

    def send(self, conn: Connection, header: frames.Header, offset: int, length: int) -> None: ...
    def receive(self, reader: SocketReader, offset: int, length: int) -> None: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def _mid_transfer(what: str) -> Iterator[None]:
    """Once data is moving, an error cannot be answered in the stream: drop the connection."""
    try:
        yield
    except (ConnectionError, TimeoutError):
        raise
    except Exception as exc:
        log.exception("failed %s", what)
        raise ConnectionAbortedError(f"failed {what}: {exc}") from exc


class DatanodeHandler:
    def __init__(self, datanode: "Datanode") -> None:
        self.datanode = datanode

    def handle(self, conn: Connection, header: frames.Header, msg: Any, data_length: int) -> None:
        if isinstance(msg, m.Write):
            try:
                admitted = self._admit(msg.datanode, msg.offset, data_length, msg.key)
            except CrailError:
                conn.reader.skip(data_length)
                raise
            with admitted, _mid_transfer("receiving a WRITE"):
                self.datanode.store.receive(conn.reader, msg.offset, data_length)
            conn.reply(header, m.Empty())
        elif isinstance(msg, m.Read):
            with self._admit(msg.datanode, msg.offset, msg.length, msg.key), \
                    _mid_transfer("sending a READ"):
                self.datanode.store.send(conn, header, msg.offset, msg.length)
        elif isinstance(msg, m.Ping):
            conn.reply(header, m.Pong(m.VERSION, 1))
        else:
            conn.reader.skip(data_length)
            raise UnknownOperation(f"a datanode does not serve opcode {header.opcode}")

    def _admit(self, datanode: int, offset: int, length: int, key: int) -> Admitted:
        """Check a transfer's datanode id, range and key."""
        dn = self.datanode
        if dn.store is None:
            raise InvalidArgument(f"datanode {dn.id} serves its blocks over NVMe/TCP only")
        if dn.id == 0:
            raise Stale("this datanode is not registered with a namenode yet")
        if datanode != dn.id:
            raise Stale(f"this datanode is now {dn.id}, not {datanode}: "
                        "the data addressed was lost in a restart")
        if length > frames.MAX_DATA or offset + length > dn.capacity:
            raise OutOfRange(f"{length} bytes at {offset} are outside this datanode's "
                             f"{dn.capacity} bytes")
        return dn.keys.admit(offset, length, key)

    def disconnected(self, conn: Connection) -> None:
        pass


class Datanode:
    def __init__(self, config: Config) -> None:
        dn = config.datanode
        if dn.tier not in TIERS:
            raise InvalidArgument(f"unknown tier {dn.tier!r} (choose from {', '.join(TIERS)})")
        classes = config.namenode.storage_classes
        if TIERS[dn.tier] not in classes:
            raise InvalidArgument(f"tier {dn.tier} serves class {TIERS[dn.tier]!r}, "
                                  f"which is not among {classes}")
        if dn.rdma not in RDMA_MODES:
            raise InvalidArgument(f"datanode.rdma is one of {', '.join(RDMA_MODES)}, not {dn.rdma!r}")
        self.config = config
        self.storage_class = classes.index(TIERS[dn.tier])
        host, port = parse_address(dn.address)
        self.server = Server(host, port, DatanodeHandler(self), f"datanode-{dn.tier}",
                             dn.spin_us / 1e6, bulk=True, send_buffer=dn.send_buffer)
        self.store: BlockStore | None = None  # what the TCP transport serves (not on nvmf)
        self.export: export.Export | None = None  # the nvmf tier's NVMe/TCP export
        if dn.tier == "nvmf":
            try:
                self.export = self._make_export(config)
            except BaseException:
                self.server.stop()
                raise
            self.capacity = self.export.capacity
        else:
            self.store = self._make_store(config)
            self.capacity = self.store.capacity
        self.rdma: Any = None  # a verbs.Listener while the pool is served over RDMA
        self.rdma_region = m.NO_RDMA
        self.keys = KeyRegions(0, 1)  # until the namenode's block size is known
        self.id = 0
        self._stopped = threading.Event()
        self._namenode: Channel | None = None

    def _make_store(self, config: Config) -> BlockStore:
        dn = config.datanode
        if dn.tier == "dram":
            return MemoryStore(dn.capacity, dn.prefault)
        path = self._flash_path(config)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return FileStore(path, dn.capacity)

    def _flash_path(self, config: Config) -> str:
        return config.datanode.path or str(state_dir(config) / f"flash-{self.server.port}.img")

    def _make_export(self, config: Config) -> export.Export:
        """Export the namespace under an NQN of its own: a client still connected to an
        earlier export (before a restart, or a registration that dropped our blocks)
        is cut off, and cannot reach the bytes of files that came after."""
        dn = config.datanode
        base = dn.nvmf_nqn or f"nqn.2026-11.io.crailpy:datanode-{socket.gethostname()}-{self.server.port}"
        return export.export(dn.nvmf_backend, self._flash_path(config), dn.capacity,
                             self.server.host, dn.nvmf_port, f"{base}-{secrets.token_hex(4)}",
                             dn.spdk_socket)

    def start(self) -> "Datanode":
        self.server.start()
        self._serve_rdma()
        self._register()
        threading.Thread(target=self._heartbeat, name="datanode-heartbeat", daemon=True).start()
        return self

    def _serve_rdma(self) -> None:
        """Accept queue pairs for the DRAM pool, if an RDMA device serves our address.

        The pool itself is registered region by region, by `KeyRegions`.
        """
        mode = self.config.datanode.rdma
        if not isinstance(self.store, MemoryStore) or mode == "off":
            return
        from crailpy import verbs  # only here: a datanode without RDMA never loads cffi

        try:
            self.rdma = verbs.Listener(self.server.host, self.config.datanode.rdma_port)
        except verbs.RdmaError as exc:
            if mode == "on":
                raise
            log.info("serving TCP only, not RDMA: %s", exc)
            return
        self.rdma.start()
        log.info("serving %d bytes by RDMA on %s, port %d", self.capacity, self.rdma.device,
                 self.rdma.port)

    def _register_region(self, start: int, length: int) -> tuple[int, Any]:
        """A key region registered with the RDMA device: its rkey is its key."""
        memory = self.rdma.register(memoryview(self.store.memory)[start : start + length])
        return memory.rkey, memory

    def _region_size(self, block_size: int) -> int:
        """`key_region` in whole blocks: at least one, and enough that the keys fit a message."""
        fit = -(-self.capacity // (MAX_ITEMS * block_size))
        return max(1, fit, self.config.datanode.key_region // block_size) * block_size

    def _register(self) -> None:
        """Register with the namenode, under keys no earlier location holds."""
        cfg = self.config
        self._connect_namenode()
        region_size = self._region_size(self._namenode.call(m.StatFs()).block_size)
        if self.keys.region_size != region_size:  # new registrations before the old go
            old, self.keys = self.keys, KeyRegions(self.capacity, region_size,
                                                   self._register_region if self.rdma else None)
            old.close()
        elif self.id:
            # Registering again means the namenode dropped our blocks, and clients may
            # still hold their locations. Over RDMA they never reach our CPU: the keys
            # must change so that the device refuses them. Over NVMe/TCP the export
            # is made again, under a new NQN.
            self.keys.rotate_all()
            if self.export is not None:
                self.export.remove()
                self.export = None
        if cfg.datanode.tier == "nvmf" and self.export is None:
            self.export = self._make_export(cfg)
        host = self.server.host
        if host in ("0.0.0.0", "::"):
            host = self._namenode.sock.getsockname()[0]
        rdma, nvmf = m.NO_RDMA, m.NO_NVMF
        transports = m.Transport.TCP
        if self.rdma is not None:
            rdma = m.RdmaRegion(self.rdma.port, self.keys.address)
            transports |= m.Transport.RDMA
        if self.export is not None:  # its blocks move by NVMe/TCP only
            nvmf = m.NvmfTarget(self.export.port, self.export.nqn)
            transports = m.Transport.NVMF
        reply = self._namenode.call(m.Register(self.storage_class, cfg.datanode.location_class,
                                               transports, self.server.port, self.capacity,
                                               rdma, nvmf, region_size, tuple(self.keys.all()),
                                               host))
        self.rdma_region = rdma
        self.id, self._key = reply.datanode, reply.key
        self.heartbeat_interval = reply.heartbeat_ms / 1000
        log.info("datanode %d (%s, %d bytes) serving on %s:%d%s", self.id, cfg.datanode.tier,
                 self.capacity, host, self.server.port,
                 f", NVMe/TCP {nvmf.nqn} on port {nvmf.port}" if nvmf.port else "")

    def _connect_namenode(self) -> None:
        if self._namenode is None or self._namenode.broken:
            self._namenode = Channel.for_client(parse_address(self.config.namenode.address),
                                                self.config.client, "namenode")

    def _heartbeat(self) -> None:
        hurry = 0  # heartbeats sent at once in a row, to move key changes along
        while not self._stopped.wait(0 if hurry else self.heartbeat_interval):
            rotated, retired = self.keys.reports()
            try:
                self._connect_namenode()
                reply = self._namenode.call(m.Heartbeat(self.id, self._key, tuple(rotated),
                                                        tuple(retired)))
            except Stale:
                # Declared dead, or the namenode restarted: what we hold is lost to it anyway.
                log.warning("the namenode does not know datanode %d; registering again", self.id)
                try:
                    self._register()
                except CrailError as exc:
                    log.warning("cannot register: %s", exc)
                hurry = 0
                continue
            except CrailError as exc:
                self.keys.unreport(rotated, retired)
                log.warning("heartbeat failed: %s", exc)
                hurry = 0
                continue
            self.keys.acknowledged(rotated)
            self.keys.rotate(reply.rotate)
            # Freed blocks wait for these key changes: carry them on at once, but not
            # forever, so that a stream of deletes cannot keep us heartbeating.
            hurry = hurry + 1 if self.keys.busy and hurry < 8 else 0

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        # In this order, each step taken even if one before it fails: no request is served
        # after the first, and the device stops reaching into the pool before the pool goes.
        parts = (self._namenode, self.rdma, self.keys, self.store)
        steps = [self.server.stop, *(part.close for part in parts if part is not None)]
        if self.export is not None:
            steps.append(self.export.remove)
        with contextlib.ExitStack() as stack:  # it runs its callbacks last first
            for step in reversed(steps):
                stack.callback(step)
