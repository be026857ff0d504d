"""A client connection with many requests in flight, matched by request id.

`submit` sends a request and returns a `Pending` at once; `Pending.result()`
waits for the answer. There is no receiver thread: whichever caller waits
takes the receive lock and reads responses, completing every pending request
it meets, until its own is done. A lone request therefore costs one send and
one receive on the caller's own thread, with no hand-off between threads.
A READ's data is received straight into the buffer given with the request.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import TYPE_CHECKING, Any, Sequence

from crailpy.errors import CrailError, ProtocolError, Timeout, Unreachable, error_for
from crailpy.netio import BULK, Buffer, Closed, SocketReader, configure, send_all
from crailpy.protocol import frames, wire
from crailpy.protocol.messages import CARRIES_DATA, OPCODES, OPERATIONS, Error

if TYPE_CHECKING:
    from crailpy.config import ClientConfig


class Pending:
    """One request in flight."""

    __slots__ = ("channel", "request_id", "opcode", "response_cls", "into", "bulk", "done",
                 "value", "error")

    def __init__(self, channel: "Channel", request_id: int, opcode: int, response_cls: type,
                 into: memoryview | None, bulk: bool) -> None:
        self.channel = channel
        self.request_id = request_id
        self.opcode = opcode
        self.response_cls = response_cls
        self.into = into
        self.bulk = bulk  # it moves data enough to be waited for asleep (netio.BULK)
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> Any:
        """The response message (for a READ, the number of bytes received into the buffer)."""
        if not self.done:
            self.channel._wait(self)
        if self.error is not None:
            raise self.error
        return self.value


class Channel:
    def __init__(self, address: tuple[str, int], connect_timeout: float, io_timeout: float,
                 peer: str = "server", spin: float = 0.0, bulk: bool = False,
                 send_buffer: int = 0) -> None:
        self.address = address
        self.peer = peer
        # An ASCII name goes to getaddrinfo as bytes: a str would be IDNA-encoded first, and
        # importing that codec costs a short-lived client a millisecond.
        host = address[0].encode() if address[0].isascii() else address[0]
        try:
            self.sock = socket.create_connection((host, address[1]), timeout=connect_timeout)
        except socket.timeout:
            raise Timeout(f"{peer} at {address[0]}:{address[1]} did not answer within "
                          f"{connect_timeout} s") from None
        except OSError as exc:
            raise Unreachable(f"cannot reach {peer} at {address[0]}:{address[1]}: "
                              f"{exc.strerror or exc}") from None
        configure(self.sock, io_timeout, io_timeout, send_buffer)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = SocketReader(self.sock, spin=spin, greedy=not bulk)
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self.broken: BaseException | None = None

    @classmethod
    def for_client(cls, address: tuple[str, int], config: "ClientConfig", peer: str,
                   bulk: bool = False) -> "Channel":
        """A channel with the timeouts and spinning of the client configuration; a `bulk`
        one (to a datanode) receives data straight into its destination buffers and
        sends with the configured send buffer."""
        return cls(address, config.connect_timeout, config.io_timeout, peer,
                   config.spin_us / 1e6, bulk, config.send_buffer if bulk else 0)

    def submit(self, msg: Any, data: Sequence[Buffer] = (), into: memoryview | None = None) -> Pending:
        """Send `msg` (followed by `data`); the answer is read when someone waits for it."""
        length = sum([len(d) for d in data]) if data else 0
        pending, head = self._register(msg, length, into)
        self._send([head, *data] if data else [head])
        return pending

    def submit_many(self, msgs: Sequence[Any]) -> list[Pending]:
        """Send requests without data in one system call (a pipeline's batch)."""
        registered = [self._register(msg, 0, None) for msg in msgs]
        self._send([head for _, head in registered])
        return [pending for pending, _ in registered]

    def _register(self, msg: Any, length: int, into: memoryview | None) -> tuple[Pending, bytes]:
        """A request's `Pending`, awaited from now on, and its header and body."""
        if self.broken is not None:
            raise self.broken
        request_id = next(self._ids)
        opcode = OPCODES[type(msg)]
        pending = Pending(self, request_id, opcode, OPERATIONS[opcode][1], into,
                          length + (len(into) if into is not None else 0) >= BULK)
        head = frames.encode_request(msg, request_id, length)
        self._pending[request_id] = pending
        return pending, head

    def _send(self, buffers: list[Buffer]) -> None:
        try:
            with self._send_lock:
                send_all(self.sock, buffers)
        except OSError as exc:
            self._break(exc)
            raise self.broken from None

    def call(self, msg: Any, data: Sequence[Buffer] = (), into: memoryview | None = None) -> Any:
        return self.submit(msg, data, into).result()

    def close(self) -> None:
        self._break(Unreachable(f"connection to {self.peer} closed"))

    def _wait(self, pending: Pending) -> None:
        with self._recv_lock:
            while not pending.done:
                if self.broken is not None:
                    # Also the request whose response was being read when the connection broke.
                    pending.error, pending.done = self.broken, True
                    return
                try:
                    self._receive_one(spin=not pending.bulk)
                except (CrailError, OSError) as exc:  # framing is lost: fail the whole connection
                    self._break(exc)

    def _receive_one(self, spin: bool) -> None:
        header = frames.decode_header(self.reader.read_exact(frames.HEADER_SIZE, spin))
        pending = self._pending.pop(header.request_id, None)
        if pending is None or not header.flags & frames.RESPONSE or header.opcode != pending.opcode:
            raise ProtocolError(f"{self.peer} sent a frame that answers no request of ours "
                                f"(id {header.request_id}, opcode {header.opcode})")
        cls = Error if header.status else pending.response_cls
        size = frames.body_length(header, cls)
        msg = wire.decode(cls, self.reader.read_exact(size))
        data_length = header.length - size
        if cls is Error:
            pending.error = error_for(header.status, msg.message)
        elif cls in CARRIES_DATA:
            if pending.into is None or data_length > len(pending.into):
                raise ProtocolError(f"{self.peer} sent {data_length} bytes for a smaller buffer")
            self.reader.readinto(pending.into[:data_length])
            pending.value = data_length
        else:
            pending.value = msg
        pending.done = True

    def _break(self, exc: BaseException) -> None:
        """Fail every request in flight; the connection cannot be used again."""
        if self.broken is None:
            if isinstance(exc, socket.timeout):
                exc = Timeout(f"{self.peer} at {self.address[0]}:{self.address[1]} did not answer")
            elif isinstance(exc, Closed) or not isinstance(exc, CrailError):
                exc = Unreachable(f"lost the connection to {self.peer} at "
                                  f"{self.address[0]}:{self.address[1]}: {exc}")
            self.broken = exc
            try:
                self.sock.close()
            except OSError:
                pass
        for pending in list(self._pending.values()):
            pending.error, pending.done = self.broken, True
        self._pending.clear()
