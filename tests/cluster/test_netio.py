"""The socket helpers over a real loopback TCP connection: bulk data is received with a
raised low-water mark (SO_RCVLOWAT), which must never hold back bytes that are all there."""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from crailpy.netio import LOWAT, SocketReader


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    receiver.settimeout(5.0)  # a stall fails the test instead of hanging it
    listener.close()
    yield sender, receiver
    sender.close()
    receiver.close()


def _send_later(sock: socket.socket, pieces: list[bytes], pause: float) -> threading.Thread:
    def run() -> None:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("length", [3 * LOWAT + 12345, LOWAT + 1, 300 * 1024])
def test_bulk_data_then_a_small_header_arrive_without_a_stall(pair, length: int) -> None:
    sender, receiver = pair
    body = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    # The body trickles in, and its last piece is smaller than the mark; then a header.
    cut = [0, 1000, LOWAT // 3, length - 7000, length]
    pieces = [body[a:b] for a, b in zip(cut, cut[1:]) if b > a] + [b"HDR"]
    thread = _send_later(sender, pieces, pause=0.05)
    reader = SocketReader(receiver, spin=0.0001)
    dest = bytearray(length)
    reader.readinto(memoryview(dest))
    assert bytes(reader.read_exact(3)) == b"HDR"  # the mark is back down: 3 bytes wake us
    assert dest == body
    thread.join()
