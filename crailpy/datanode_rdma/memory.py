"""The DRAM tier's block store: one anonymous memory mapping.

The mapping is reserved whole but the kernel backs a page only when it is
first written, so a datanode's resident memory follows what is stored, up to
its capacity. Reads are sent from the mapping and writes land in it straight
from the socket: no copy in Python either way.
"""

from __future__ import annotations

import mmap

from crailpy.netio import SocketReader, send_all
from crailpy.protocol import frames
from crailpy.protocol.messages import Data
from crailpy.serving import Connection


class MemoryStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, capacity, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._view = memoryview(self._map)

    def send(self, conn: Connection, header: frames.Header, offset: int, length: int) -> None:
        conn.reply_head(header, Data(), length)
        send_all(conn.sock, [self._view[offset : offset + length]])

    def receive(self, reader: SocketReader, offset: int, length: int) -> None:
        reader.readinto(self._view[offset : offset + length])

    def close(self) -> None:
        self._view.release()
        self._map.close()
