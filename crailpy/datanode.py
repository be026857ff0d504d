"""The datanode daemon: serves a block store over TCP and keeps the namenode informed.

The store is the tier: `MemoryStore` for DRAM, `FileStore` for the file-backed
flash tier. The datanode knows nothing of files or blocks; it serves byte
ranges of its region to whoever names its current id, and refuses others, so a
client holding locations from before a restart gets an error, not other bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Iterator, Protocol

from crailpy.channel import Channel
from crailpy.config import Config, state_dir
from crailpy.datanode_nvmf.filestore import FileStore
from crailpy.datanode_rdma.memory import MemoryStore
from crailpy.errors import CrailError, InvalidArgument, OutOfRange, Stale, UnknownOperation
from crailpy.netio import SocketReader, parse_address
from crailpy.protocol import frames
from crailpy.protocol import messages as m
from crailpy.serving import Connection, Server

log = logging.getLogger(__name__)

# tier name -> storage class name it serves
TIERS = {"dram": "dram", "file": "flash"}
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
            error = self._check(msg.datanode, msg.offset, data_length)
            if error:
                conn.reader.skip(data_length)
                raise error
            with _mid_transfer("receiving a WRITE"):
                self.datanode.store.receive(conn.reader, msg.offset, data_length)
            conn.reply(header, m.Empty())
        elif isinstance(msg, m.Read):
            error = self._check(msg.datanode, msg.offset, msg.length)
            if error:
                raise error
            with _mid_transfer("sending a READ"):
                self.datanode.store.send(conn, header, msg.offset, msg.length)
        elif isinstance(msg, m.Ping):
            conn.reply(header, m.Pong(m.VERSION, 1))
        else:
            conn.reader.skip(data_length)
            raise UnknownOperation(f"a datanode does not serve opcode {header.opcode}")

    def _check(self, datanode: int, offset: int, length: int) -> CrailError | None:
        if self.datanode.id == 0:
            return Stale("this datanode is not registered with a namenode yet")
        if datanode != self.datanode.id:
            return Stale(f"this datanode is now {self.datanode.id}, not {datanode}: "
                         "the data addressed was lost in a restart")
        if length > frames.MAX_DATA or offset + length > self.datanode.store.capacity:
            return OutOfRange(f"{length} bytes at {offset} are outside this datanode's "
                              f"{self.datanode.store.capacity} bytes")
        return None

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
                             dn.spin_us / 1e6, bulk=True)
        self.store: BlockStore = self._make_store(config)
        self.rdma: Any = None  # a verbs.Listener while the pool is served over RDMA
        self.rdma_region = m.NO_RDMA
        self.id = 0
        self._stopped = threading.Event()
        self._namenode: Channel | None = None

    def _make_store(self, config: Config) -> BlockStore:
        dn = config.datanode
        if dn.tier == "dram":
            return MemoryStore(dn.capacity, dn.prefault)
        path = dn.path or str(state_dir(config) / f"flash-{self.server.port}.img")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return FileStore(path, dn.capacity)

    def start(self) -> "Datanode":
        self.server.start()
        self._serve_rdma()
        self._register()
        threading.Thread(target=self._heartbeat, name="datanode-heartbeat", daemon=True).start()
        return self

    def _serve_rdma(self) -> None:
        """Register the DRAM pool with the RDMA device and accept queue pairs, if there is one."""
        mode = self.config.datanode.rdma
        if not isinstance(self.store, MemoryStore) or mode == "off":
            return
        from crailpy import verbs  # only here: a datanode without RDMA never loads cffi

        try:
            self.rdma = verbs.Listener(self.server.host, self.config.datanode.rdma_port)
            self._rdma_memory = region = self.rdma.register(self.store.memory)
        except verbs.RdmaError as exc:
            if self.rdma is not None:
                self.rdma.close()
                self.rdma = None
            if mode == "on":
                raise
            log.info("serving TCP only, not RDMA: %s", exc)
            return
        self.rdma.start()
        self.rdma_region = m.RdmaRegion(self.rdma.port, region.address, region.rkey)
        log.info("serving %d bytes by RDMA on %s, port %d", region.length, self.rdma.device,
                 self.rdma.port)

    def _register(self) -> None:
        cfg = self.config
        if self.id and self.rdma is not None:
            self._rotate_rdma_key()
        self._connect_namenode()
        host = self.server.host
        if host in ("0.0.0.0", "::"):
            host = self._namenode.sock.getsockname()[0]
        transports = m.Transport.TCP | (m.Transport.RDMA if self.rdma else 0)
        reply = self._namenode.call(m.Register(self.storage_class, cfg.datanode.location_class,
                                               transports, self.server.port, self.store.capacity,
                                               self.rdma_region, host))
        self.id, self._key = reply.datanode, reply.key
        self.heartbeat_interval = reply.heartbeat_ms / 1000
        log.info("datanode %d (%s, %d bytes) serving on %s:%d", self.id, cfg.datanode.tier,
                 self.store.capacity, host, self.server.port)

    def _rotate_rdma_key(self) -> None:
        """Register the pool anew and drop the old registration: its key stops working.

        Registering again means the namenode dropped our blocks; clients may still
        hold their locations under the old key. The TCP path refuses them by the
        datanode id, but RDMA never reaches our CPU, so the key must change: the
        device then refuses those clients instead of serving the blocks' new owners.
        """
        old, self._rdma_memory = self._rdma_memory, self.rdma.register(self.store.memory)
        self.rdma_region = self.rdma_region._replace(address=self._rdma_memory.address,
                                                     key=self._rdma_memory.rkey)
        old.close()

    def _connect_namenode(self) -> None:
        if self._namenode is None or self._namenode.broken:
            self._namenode = Channel.for_client(parse_address(self.config.namenode.address),
                                                self.config.client, "namenode")

    def _heartbeat(self) -> None:
        while not self._stopped.wait(self.heartbeat_interval):
            try:
                self._connect_namenode()
                self._namenode.call(m.Heartbeat(self.id, self._key))
            except Stale:
                # Declared dead, or the namenode restarted: what we hold is lost to it anyway.
                log.warning("the namenode does not know datanode %d; registering again", self.id)
                try:
                    self._register()
                except CrailError as exc:
                    log.warning("cannot register: %s", exc)
            except CrailError as exc:
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stopped.set()
        self.server.stop()
        if self._namenode is not None:
            self._namenode.close()
        if self.rdma is not None:  # before the pool goes: the device must stop reaching into it
            self.rdma.close()
            self._rdma_memory.close()
        self.store.close()
