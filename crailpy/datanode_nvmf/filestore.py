"""The flash tier's block store on a local file (sparse until written).

Reads leave with `os.sendfile` (file to socket in the kernel); writes come in
through one reused buffer and `os.pwrite`.
"""

from __future__ import annotations

import os

from crailpy.netio import SocketReader, send_file
from crailpy.protocol import frames
from crailpy.protocol.messages import Data
from crailpy.serving import Connection

CHUNK = 1 << 20


class FileStore:
    def __init__(self, path: str, capacity: int) -> None:
        self.capacity = capacity
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, capacity)

    def send(self, conn: Connection, header: frames.Header, offset: int, length: int) -> None:
        conn.reply_head(header, Data(), length)
        send_file(conn.sock, self._fd, offset, length)

    def receive(self, reader: SocketReader, offset: int, length: int) -> None:
        scratch = memoryview(bytearray(min(CHUNK, length)))
        while length:
            chunk = scratch[: min(len(scratch), length)]
            reader.readinto(chunk)
            written = 0
            while written < len(chunk):
                written += os.pwrite(self._fd, chunk[written:], offset + written)
            offset += len(chunk)
            length -= len(chunk)

    def close(self) -> None:
        """Close and remove the file: a restarted datanode is a new, empty one."""
        os.close(self._fd)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
