"""The socket helpers over a real loopback TCP connection: blocking sockets whose waits the
kernel bounds (`configure`), and bulk data received in one call that waits for all of it
(MSG_WAITALL), which must neither stall on bytes that trickle in nor swallow what follows."""

from __future__ import annotations

import array
import socket
import threading
import time
from typing import Iterator

import pytest

from crailpy.netio import SocketReader, configure, send_all


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    configure(receiver, 5.0, 5.0)  # a stall fails the test instead of hanging it
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


@pytest.mark.parametrize("length", [3 * 512 * 1024 + 12345, 512 * 1024 + 1, 300 * 1024])
def test_bulk_data_then_a_small_header_arrive_without_a_stall(pair, length: int) -> None:
    sender, receiver = pair
    body = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    # The body trickles in, its last piece small; then a header.
    cut = [0, 1000, length // 3, length - 7000, length]
    pieces = [body[a:b] for a, b in zip(cut, cut[1:]) if b > a] + [b"HDR"]
    thread = _send_later(sender, pieces, pause=0.05)
    reader = SocketReader(receiver, spin=0.0001)
    dest = bytearray(length)
    started = time.monotonic()
    reader.readinto(memoryview(dest))
    assert bytes(reader.read_exact(3)) == b"HDR"
    assert dest == body
    assert time.monotonic() - started < 4  # no wait ran into the 5 s timeout
    thread.join()


def test_a_silent_peer_times_out_and_a_slow_one_does_not(pair) -> None:
    sender, receiver = pair
    configure(receiver, 5.0, 0.3)
    reader = SocketReader(receiver)
    with pytest.raises(TimeoutError):
        reader.read_exact(1, spin=False)
    # A body whose pieces come 0.2 s apart takes longer than the 0.3 s timeout, but each
    # wait gets bytes: it is received whole.
    body = b"z" * 400_000
    thread = _send_later(sender, [body[i : i + 100_000] for i in range(0, len(body), 100_000)],
                         pause=0.2)
    dest = bytearray(len(body))
    reader.readinto(memoryview(dest))
    assert dest == body
    thread.join()


def test_a_send_nobody_takes_times_out(pair) -> None:
    sender, receiver = pair
    configure(sender, 0.3, send_buffer=64 * 1024)
    with pytest.raises(TimeoutError):
        send_all(sender, [bytes(64 << 20)])  # far more than both socket buffers hold


def test_send_all_delivers_many_buffers_of_any_item_size_in_order(pair) -> None:
    sender, receiver = pair
    configure(sender, 5.0, send_buffer=16 * 1024)  # small: sends come back partial
    words = array.array("i", range(50_000))  # a memoryview whose items are 4 bytes
    buffers = [bytes([i % 251]) * (i % 97) for i in range(1500)]  # more than one sendmsg takes
    buffers[700:700] = [memoryview(words), bytearray(b"mid"), b""]
    expected = b"".join(bytes(memoryview(b)) for b in buffers)
    got = bytearray()

    def receive() -> None:
        while len(got) < len(expected):
            time.sleep(0.001)  # a slow reader
            got.extend(receiver.recv(8192))
    thread = threading.Thread(target=receive)
    thread.start()
    send_all(sender, buffers)
    thread.join(timeout=10)
    assert got == expected


def _send_every(sock: socket.socket, pause: float, count: int) -> threading.Thread:
    return _send_later(sock, [b"x"] * count, pause)


def test_a_poll_grows_for_a_peer_that_sends_often_and_shrinks_for_one_that_does_not(pair) -> None:
    sender, receiver = pair
    reader = SocketReader(receiver, spin=50e-6, spin_max=20e-3)
    windows = []
    thread = _send_every(sender, 0.002, 30)  # each sleep after a 50 us poll is short
    for _ in range(30):
        reader.read_exact(1)
        windows.append(reader.spin)
    thread.join()
    # From 50 us doubled after each short sleep until a poll spans the 2 ms between sends
    # (a hiccup of the machine longer than the ceiling may halve it on the way).
    assert 1.6e-3 <= max(windows) <= 20e-3 and min(windows) >= 50e-6
    thread = _send_every(sender, 0.06, 6)  # each sleep is longer than the ceiling
    for _ in range(6):
        reader.read_exact(1)
    thread.join()
    assert reader.spin < 20e-3 / 8  # halved after each
    assert reader.spin >= 50e-6


def test_readers_that_share_a_spinner_poll_in_turn(pair) -> None:
    sender, receiver = pair
    spinner = threading.Lock()
    reader = SocketReader(receiver, spin=50e-6, spin_max=20e-3, spinner=spinner)
    with spinner:  # another reader polls: this one sleeps at once, and its window stays
        thread = _send_every(sender, 0.002, 5)
        for _ in range(5):
            assert bytes(reader.read_exact(1)) == b"x"
        thread.join()
        assert reader.spin == 50e-6
    thread = _send_every(sender, 0.002, 10)
    windows = []
    for _ in range(10):
        reader.read_exact(1)
        windows.append(reader.spin)
    thread.join()
    assert max(windows) > 50e-6 and not spinner.locked()  # it polled, and let go after
