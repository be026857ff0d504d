"""The namenode's RPC binding: a table from opcode to service method (Crail's way)."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from crailpy.config import Config
from crailpy.errors import UnknownOperation
from crailpy.namenode.service import NamenodeService
from crailpy.netio import parse_address
from crailpy.protocol import frames
from crailpy.protocol.messages import Op
from crailpy.serving import Connection, Server

log = logging.getLogger(__name__)


class NamenodeHandler:
    def __init__(self, service: NamenodeService) -> None:
        self.service = service
        s = service
        self.table: dict[int, Callable[[Any, int], Any]] = {
            Op.PING: s.ping, Op.CREATE: s.create, Op.CREATE_PART: s.create_part, Op.PUT: s.put,
            Op.LOOKUP: s.lookup, Op.LIST_PARTS: s.list_parts, Op.GET_BLOCKS: s.get_blocks, Op.ALLOC_BLOCKS: s.alloc_blocks,
            Op.COMMIT: s.commit, Op.ABORT: s.abort, Op.LIST: s.list_dir, Op.DELETE: s.delete,
            Op.RENAME: s.rename, Op.STATFS: s.statfs, Op.REGISTER: s.register,
            Op.HEARTBEAT: s.heartbeat,
        }

    def handle(self, conn: Connection, header: frames.Header, msg: Any, data_length: int) -> None:
        method = self.table.get(header.opcode)
        if method is None or data_length:
            conn.reader.skip(data_length)
            raise UnknownOperation(f"the namenode does not serve opcode {header.opcode}")
        with self.service.lock:
            reply = method(msg, conn.session)
        conn.reply(header, reply)

    def disconnected(self, conn: Connection) -> None:
        with self.service.lock:
            self.service.end_session(conn.session)


class Namenode:
    """A running namenode: the service, its server and the liveness monitor."""

    def __init__(self, config: Config) -> None:
        nn = config.namenode
        self.service = NamenodeService(nn.block_size, list(nn.storage_classes), nn.dead_after,
                                       nn.heartbeat_interval, nn.inline_max, nn.inline_capacity)
        host, port = parse_address(nn.address)
        self.server = Server(host, port, NamenodeHandler(self.service), "namenode",
                             nn.spin_us / 1e6, spin_max=nn.spin_max_us / 1e6)
        self.address = f"{self.server.host}:{self.server.port}"
        self._stopped = threading.Event()

    def start(self) -> "Namenode":
        self.server.start()
        threading.Thread(target=self._monitor, name="namenode-liveness", daemon=True).start()
        log.info("namenode serving on %s", self.address)
        return self

    def _monitor(self) -> None:
        while not self._stopped.wait(self.service.heartbeat_interval / 2):
            with self.service.lock:
                dead = self.service.expire_datanodes()
            for datanode in dead:
                log.warning("datanode %d missed its heartbeats: declared dead", datanode)

    def stop(self) -> None:
        self._stopped.set()
        self.server.stop()
