"""The DRAM tier's block store: one anonymous memory mapping.

With `prefault` the kernel backs the whole mapping at start: the first write
of a page costs more than ten later ones (on a VM, 0.5 GB/s against 7 GB/s),
and a pool that RDMA will register must be resident anyway. Without it, pages
are backed when first written and resident memory follows what is stored.
Reads are sent from the mapping and writes land in it straight from the
socket: no copy in Python either way. Over RDMA the device reads and writes
the same mapping (`memory`), registered whole.
"""

from __future__ import annotations

import logging
import mmap

from crailpy.netio import SocketReader
from crailpy.protocol import frames
from crailpy.protocol.messages import Data
from crailpy.serving import Connection

log = logging.getLogger(__name__)


class MemoryStore:
    def __init__(self, capacity: int, prefault: bool) -> None:
        self.capacity = capacity
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (mmap.MAP_POPULATE if prefault else 0)
        self.memory = mmap.mmap(-1, capacity, flags=flags)
        self._view = memoryview(self.memory)

    def send(self, conn: Connection, header: frames.Header, offset: int, length: int) -> None:
        conn.reply_data(header, Data(), [self._view[offset : offset + length]])

    def receive(self, reader: SocketReader, offset: int, length: int) -> None:
        reader.readinto(self._view[offset : offset + length])

    def close(self) -> None:
        self._view.release()
        try:
            self.memory.close()
        except BufferError:
            # A view of it is still alive (a connection not yet gone, a frame in a
            # traceback): the mapping goes with the last of them; unmapping it now
            # would leave them pointing at nothing.
            log.debug("the pool is unmapped when its last view goes")
