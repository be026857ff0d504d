"""A threaded server loop shared by the namenode and the datanodes.

One thread accepts; each connection gets a thread that reads one frame at a
time, hands it to the role's handler and batches replies until the input runs
dry, so a client that pipelines many requests gets its answers in few sends.
Threads (not asyncio) because data moves with blocking `recv_into` and
`sendmsg` straight between sockets and buffers, and both release the GIL.

A frame that cannot be understood is answered with an error; a header that
cannot be trusted (bad magic, absurd length, other version) is answered once
and the connection is closed. Either way the other connections go on.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from typing import Any, Callable, Protocol, Sequence

from crailpy.errors import CrailError, ProtocolError, Status
from crailpy.netio import BULK, Buffer, Closed, SocketReader, configure, send_all
from crailpy.protocol import frames, wire

log = logging.getLogger(__name__)


SEND_TIMEOUT = 60.0  # seconds a client may leave its replies unread before it is dropped


class Connection:
    """One client connection as a handler sees it: its reader and its reply queue."""

    def __init__(self, sock: socket.socket, session: int, spin: float, bulk: bool,
                 send_buffer: int = 0, spin_max: float = 0.0,
                 spinner: threading.Lock | None = None) -> None:
        self.sock = sock
        self.session = session
        configure(sock, SEND_TIMEOUT, send_buffer=send_buffer)  # a receive waits as long as it must
        self.reader = SocketReader(sock, spin=spin, greedy=not bulk, spin_max=spin_max,
                                   spinner=spinner)
        self.moved = 0  # data bytes of the last request and its reply (see netio.BULK)
        self._out: list[Buffer] = []

    def reply(self, header: frames.Header, msg: Any) -> None:
        self._out.append(frames.encode_response(header.opcode, header.request_id, msg))

    def reply_error(self, header: frames.Header, status: int, message: str) -> None:
        self._out.append(frames.encode_error(header.opcode, header.request_id, status, message))

    def reply_data(self, header: frames.Header, msg: Any, data: Sequence[Buffer]) -> None:
        """Reply with a body followed by `data`, sent from where it lies, in one system call."""
        length = sum(len(d) for d in data)
        self.moved += length
        self._out.append(frames.encode_response(header.opcode, header.request_id, msg, length))
        out, self._out = self._out, []
        send_all(self.sock, [*out, *data])

    def reply_head(self, header: frames.Header, msg: Any, data_length: int) -> None:
        """Send a reply's header and body now; the caller sends its `data_length` bytes next."""
        self.moved += data_length
        self._out.append(frames.encode_response(header.opcode, header.request_id, msg, data_length))
        self.flush()

    def flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            send_all(self.sock, out)


class Handler(Protocol):
    def handle(self, conn: Connection, header: frames.Header, msg: Any, data_length: int) -> None:
        """Answer one request; the request's `data_length` bytes are still on `conn.reader`."""

    def disconnected(self, conn: Connection) -> None:
        """The connection is gone (to release what it held)."""


class Server:
    """Listens on `address` and serves each connection with `handler` in its own thread."""

    def __init__(self, host: str, port: int, handler: Handler, name: str,
                 spin: float = 0.0, bulk: bool = False, send_buffer: int = 0,
                 spin_max: float = 0.0) -> None:
        """`spin`, `spin_max`: see `netio.SocketReader`; `bulk`: requests carry data,
        which should go straight to where it belongs; `send_buffer`: see `netio.configure`."""
        self.handler = handler
        self.name = name
        self.spin = spin
        self.bulk = bulk
        self.send_buffer = send_buffer
        self.spin_max = spin_max
        self._spinner = threading.Lock()  # one connection polls at a time (netio.SocketReader)
        self.listener = socket.create_server((host, port), reuse_port=False, backlog=512)
        self.host, self.port = self.listener.getsockname()[:2]
        self._sessions = itertools.count(1)
        self._conns: dict[socket.socket, threading.Thread] = {}  # each with its thread
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.serve_forever, name=f"{self.name}-accept",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                      name=f"{self.name}-conn")
            with self._lock:
                self._conns[sock] = thread
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and wait, up to `timeout` seconds, for their threads to
        leave: when it returns, no handler is in the middle of a request, so what they
        serve (a datanode's pool) may go."""
        self._stopped.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        deadline = time.monotonic() + timeout
        if self._thread:
            self._thread.join(timeout)  # no connection comes after it
        with self._lock:
            conns = dict(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in conns.values():
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _serve(self, sock: socket.socket) -> None:
        conn = Connection(sock, next(self._sessions), self.spin, self.bulk, self.send_buffer,
                          self.spin_max, self._spinner)
        try:
            serve_connection(conn, self.handler.handle)
        except ConnectionAbortedError:
            # A transfer failed half-way; the stream is intact up to the replies queued
            # for earlier requests, so those still go out.
            try:
                conn.flush()
            except OSError:
                pass
        except (Closed, ConnectionError, TimeoutError):
            pass
        except OSError as exc:
            log.debug("connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.pop(sock, None)
            sock.close()
            self.handler.disconnected(conn)


def serve_connection(conn: Connection,
                     handle: Callable[[Connection, frames.Header, Any, int], None]) -> None:
    """Read and answer frames until the peer leaves or breaks the framing."""
    while _serve_frame(conn, handle):
        if not conn.reader.buffered():
            conn.flush()  # answer in one send all that the peer pipelined
    conn.flush()


def _serve_frame(conn: Connection,
                 handle: Callable[[Connection, frames.Header, Any, int], None]) -> bool:
    """Answer one frame; False when the connection must close."""
    reader = conn.reader
    raw = reader.read_exact(frames.HEADER_SIZE, spin=conn.moved < BULK)
    try:
        header = frames.decode_header(raw)
        conn.moved = header.length
    except CrailError as exc:
        # Nothing after a bad header can be trusted: answer once, then hang up.
        conn.reply_error(frames.Header(*frames.HEADER.unpack(raw)[1:]), exc.status, str(exc))
        return False
    if header.flags & frames.RESPONSE:
        reader.skip(header.length)
        conn.reply_error(header, Status.PROTOCOL, "a response frame was sent to a server")
        return True
    cls = frames.REQUESTS.get(header.opcode)
    if cls is None:
        reader.skip(header.length)
        conn.reply_error(header, Status.UNKNOWN_OP, f"unknown request opcode {header.opcode}")
        return True
    try:
        size = frames.body_length(header, cls)
    except ProtocolError as exc:
        conn.reply_error(header, exc.status, str(exc))
        return False
    try:
        msg = wire.decode(cls, reader.read_exact(size))
    except ProtocolError as exc:
        reader.skip(header.length - size)
        conn.reply_error(header, exc.status, str(exc))
        return True
    try:
        handle(conn, header, msg, header.length - size)
    except (ConnectionError, TimeoutError):
        raise  # the peer is gone (a datanode's client may vanish mid-transfer)
    except CrailError as exc:
        conn.reply_error(header, exc.status, str(exc))
    except Exception as exc:  # a bug must cost one request, not the server
        log.exception("internal error handling %s", cls.__name__)
        conn.reply_error(header, Status.INTERNAL, f"internal error: {exc}")
    return True
