"""Blocking socket helpers shared by clients and servers.

`SocketReader` reads headers and bodies through one reusable buffer (few
system calls for many small messages) and lets data go straight into the
caller's buffer with `recv_into`. `send_all` sends a list of buffers with
`sendmsg`, so header and payload leave without being joined into new bytes.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Sequence

from crailpy.errors import Unreachable

Buffer = bytes | bytearray | memoryview

# An exchange that moves this many data bytes or more is waited for asleep: copying
# them takes longer than a spin lasts, and with more processes than cores a spin takes
# the CPU from the process that does that copying (docs/benchmarks.md).
BULK = 256 * 1024
# Bulk data is received with the socket's low-water mark (SO_RCVLOWAT) at up to this many
# bytes: the kernel wakes the receiver once per this much, not once per segment.
LOWAT = 512 * 1024


class Closed(Unreachable):
    """The peer closed the connection."""


class SocketReader:
    """Reads one socket; with `spin` > 0 it polls that many seconds before it sleeps.

    Spinning trades CPU for latency: on these VMs a thread that sleeps in
    recv() takes tens of microseconds to wake up, more than a whole loopback
    round trip costs. It needs a socket with a timeout (non-blocking underneath).
    A `patient` reader (a server's) waits through timeouts: only sends time out.
    A reader that is not `greedy` receives exactly what it is asked for, so that
    bulk data after a header goes straight to its destination instead of through
    the buffer (one more system call per message, one copy less per block).
    """

    def __init__(self, sock: socket.socket, size: int = 256 * 1024, spin: float = 0.0,
                 patient: bool = False, greedy: bool = True) -> None:
        self.sock = sock
        self.spin = spin if sock.gettimeout() is not None else 0.0
        self.patient = patient
        self.greedy = greedy
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def buffered(self) -> int:
        """Bytes received but not yet consumed."""
        return self._end - self._start

    def _fill(self, need: int, spin: bool = True) -> None:
        if need > len(self._buf):  # a large body (callers check it against the limits first)
            grown = bytearray(need)
            grown[: self.buffered()] = self._view[self._start : self._end]
            self._buf, self._view = grown, memoryview(grown)
            self._start, self._end = 0, self._end - self._start
        if self._start + need > len(self._buf):
            pending = self._end - self._start
            self._view[:pending] = self._view[self._start : self._end]
            self._start, self._end = 0, pending
        while self._end - self._start < need:
            stop = None if self.greedy else self._start + need
            got = self._recv_into(self._view[self._end : stop], spin)
            if not got:
                raise Closed("connection closed by peer")
            self._end += got

    def read_exact(self, n: int, spin: bool = True) -> memoryview:
        """The next `n` bytes, valid until the next call on this reader; `spin` False
        sleeps at once if they are not there (see `BULK`)."""
        self._fill(n, spin)
        out = self._view[self._start : self._start + n]
        self._start += n
        return out

    def readinto(self, dest: memoryview) -> None:
        """Fill `dest` entirely: buffered bytes first, then straight from the socket."""
        take = min(self.buffered(), len(dest))
        dest[:take] = self._view[self._start : self._start + take]
        self._start += take
        pos, mark = take, 1
        while pos < len(dest):
            left = len(dest) - pos  # bytes sure to come: a mark up to them cannot stall
            want = min(left, LOWAT) if left >= BULK else 1
            if want != mark:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                mark = want
            got = self._recv_into(dest[pos:], spin=False)  # bulk data: sleep, leave the CPU to the sender
            if not got:
                raise Closed("connection closed by peer")
            pos += got
        if mark != 1:  # headers are read as they come
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def _recv_into(self, view: memoryview, spin: bool = True) -> int:
        if spin and self.spin:
            deadline = time.perf_counter() + self.spin
            fd = self.sock.fileno()
            while True:
                try:
                    return os.readv(fd, [view])
                except BlockingIOError:
                    if time.perf_counter() > deadline:
                        break
        while True:
            try:
                return self.sock.recv_into(view)
            except TimeoutError:
                if not self.patient:
                    raise

    def skip(self, n: int) -> None:
        """Consume and drop `n` bytes (the data of a request that was refused)."""
        while n:
            chunk = min(n, len(self._buf))
            self.read_exact(chunk)
            n -= chunk


def send_all(sock: socket.socket, buffers: Sequence[Buffer]) -> None:
    """Send every byte of `buffers`, in order, without joining them."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views[:512])
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def send_file(sock: socket.socket, fd: int, offset: int, length: int) -> None:
    """Send `length` bytes of file `fd` from `offset` with `sendfile`: the kernel hands the
    pages to the socket, no copy through user space. Waits out a full socket buffer."""
    end = offset + length
    while offset < end:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, end - offset)
        except BlockingIOError:  # a socket with a timeout is non-blocking underneath
            if not select.select([], [sock], [], sock.gettimeout())[1]:
                raise TimeoutError("the peer does not take the data") from None
            continue
        if sent == 0:
            raise OSError("the file is shorter than the range to send")
        offset += sent


def parse_address(address: str, default_port: int = 9060) -> tuple[str, int]:
    """'host:port', 'host' or ':port' -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return address or "127.0.0.1", default_port
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad port in address {address!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} out of range in {address!r}")
    return host.strip("[]") or "127.0.0.1", number
