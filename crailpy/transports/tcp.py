"""The TCP transport: READ and WRITE frames of docs/protocol.md to a datanode.

Reads and writes go over two connections. On one, a thread blocked sending a
large WRITE (the datanode is not reading: it is itself blocked sending READ
data that nobody receives, because the reading thread waits to send) would
deadlock with a reading thread of the same Store.
"""

from __future__ import annotations

import threading

from crailpy.channel import Channel, Pending
from crailpy.config import ClientConfig
from crailpy.protocol.messages import Block, Read, Write
from crailpy.transports import BoundBlock


class TcpEndpoint:
    name = "tcp"

    def __init__(self, host: str, port: int, config: ClientConfig) -> None:
        self._address = (host, port)
        self._config = config
        self._lock = threading.Lock()
        self._channels: dict[str, Channel] = {}
        self._channel("read")  # connect now, so that an unreachable datanode says so at once

    def _channel(self, kind: str) -> Channel:
        with self._lock:
            channel = self._channels.get(kind)
            if channel is None:
                channel = Channel.for_client(self._address, self._config, "datanode", bulk=True)
                self._channels[kind] = channel
            return channel

    def write(self, block: Block, offset: int, data: memoryview) -> Pending:
        return self._channel("write").submit(Write(block.datanode, block.offset + offset, block.key),
                                             [data])

    def read(self, block: Block, offset: int, dest: memoryview) -> Pending:
        return self._channel("read").submit(Read(block.datanode, len(dest), block.offset + offset,
                                                 block.key),
                                            into=dest)

    def write_now(self, block: Block, offset: int, data: memoryview, placed: bool = False) -> int:
        self.write(block, offset, data).result()
        return len(data)

    def read_now(self, block: Block, offset: int, dest: memoryview) -> int:
        return self.read(block, offset, dest).result()

    def bind(self, block: Block) -> BoundBlock:
        return BoundBlock(self, block)

    def confirm(self) -> None:
        """A WRITE is answered once the datanode has its bytes."""

    @property
    def broken(self) -> bool:
        return any(c.broken is not None for c in self._channels.values())

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
