"""The server loop shared by the namenode and the datanodes, over loopback sockets."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from crailpy.protocol import frames
from crailpy.protocol import messages as m
from crailpy.serving import Connection, Server
from tests import testbed


class SlowHandler:
    """Takes a while over each request, as a datanode moving a large block does."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.finished = threading.Event()

    def handle(self, conn: Connection, header: frames.Header, msg: Any, data_length: int) -> None:
        self.entered.set()
        time.sleep(0.5)
        self.finished.set()

    def disconnected(self, conn: Connection) -> None:
        pass


def test_stop_returns_once_no_request_is_under_way() -> None:
    handler = SlowHandler()
    server = Server("127.0.0.1", 0, handler, "slow").start()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(frames.encode_request(m.StatFs(), 1))
        assert handler.entered.wait(5)
        server.stop()  # what the handler uses (a datanode's pool) may go once this returns
        assert handler.finished.is_set()
        assert sock.recv(1) == b""  # and the connection is closed


def test_stop_gives_up_on_a_handler_that_never_returns() -> None:
    release = threading.Event()

    class Stuck(SlowHandler):
        def handle(self, conn: Connection, header: frames.Header, msg: Any, data_length: int) -> None:
            self.entered.set()
            release.wait(30)

    handler = Stuck()
    server = Server("127.0.0.1", 0, handler, "stuck").start()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(frames.encode_request(m.StatFs(), 1))
        assert handler.entered.wait(5)
        started = time.monotonic()
        server.stop(timeout=0.3)
        assert time.monotonic() - started < 10 * testbed.SLOW  # bounded: a stop cannot hang on one request
        release.set()
