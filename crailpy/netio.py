"""Blocking socket helpers shared by clients and servers.

`SocketReader` reads headers and bodies through one reusable buffer (few
system calls for many small messages) and lets data go straight into the
caller's buffer with `recv_into`. `send_all` sends a list of buffers with
`sendmsg`, so header and payload leave without being joined into new bytes.

Sockets stay blocking and `configure` bounds their waits in the kernel. A
Python socket timeout would make every send and receive a poll() and then the
call: two system calls and two hand-overs of the GIL each time, which cost a
microbenchmark of the datanodes' threads 15-20% of its throughput (docs/benchmarks.md).
A wait that runs out raises BlockingIOError, which these helpers turn into
TimeoutError.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Sequence

from crailpy.errors import Unreachable

Buffer = bytes | bytearray | memoryview

# An exchange that moves this many data bytes or more is waited for asleep: copying
# them takes longer than a spin lasts, and with more processes than cores a spin takes
# the CPU from the process that does that copying (docs/benchmarks.md).
BULK = 256 * 1024


class Closed(Unreachable):
    """The peer closed the connection."""


def configure(sock: socket.socket, send_timeout: float, receive_timeout: float | None = None,
              send_buffer: int = 0) -> None:
    """Make `sock` blocking, a send that makes no progress for `send_timeout` seconds and
    (unless `receive_timeout` is None) a receive that gets nothing for that long failing.
    A `send_buffer` (bytes, 0: the kernel's autotuning) bounds the data in flight: on
    loopback a sender with megabytes queued writes them into pages that have left the
    cache, and its copies cost twice as much (docs/benchmarks.md)."""
    sock.settimeout(None)
    for option, seconds in ((socket.SO_SNDTIMEO, send_timeout), (socket.SO_RCVTIMEO, receive_timeout)):
        if seconds is not None:
            whole = int(seconds)
            sock.setsockopt(socket.SOL_SOCKET, option,
                            struct.pack("@ll", whole, int((seconds - whole) * 1e6)))
    if send_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)


class SocketReader:
    """Reads one socket; with `spin` > 0 it polls that many seconds before it sleeps.

    Spinning trades CPU for latency: on these VMs a thread that sleeps in
    recv() takes tens of microseconds to wake up, more than a whole loopback
    round trip costs. With `spin_max` above `spin` the window adapts as the
    kernel's haltpoll governor does: a sleep that a window of `spin_max` would
    have covered doubles it, a longer one halves it. A peer that sends every few
    hundred microseconds is then met by a poll, one that sends rarely costs no
    more CPU than before. A reader that is not `greedy` receives exactly what it
    is asked for, so that bulk data after a header goes straight to its
    destination instead of through the buffer (one more system call per message,
    one copy less per block). Readers that share a `spinner` lock poll one at a
    time: a server's threads share one interpreter lock, so a second poller would
    only take it from the first; the others sleep until data comes.
    """

    def __init__(self, sock: socket.socket, size: int = 256 * 1024, spin: float = 0.0,
                 greedy: bool = True, spin_max: float = 0.0,
                 spinner: threading.Lock | None = None) -> None:
        self.sock = sock
        self.spin = spin
        self.spin_min = spin
        self.spin_max = max(spin, spin_max)
        self.spinner = spinner  # held while polling, shared by readers that poll in turn
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
        """Fill `dest` entirely: buffered bytes first, then straight from the socket. The
        bytes are sure to come, so the thread waits for all of them in one call
        (MSG_WAITALL), asleep: the CPU is left to the sender, and the data arrives with
        no return to Python per segment."""
        take = min(self.buffered(), len(dest))
        dest[:take] = self._view[self._start : self._start + take]
        self._start += take
        pos = take
        while pos < len(dest):  # more than one call only after a signal or a receive timeout
            got = self._recv_into(dest[pos:], spin=False, flags=socket.MSG_WAITALL)
            if not got:
                raise Closed("connection closed by peer")
            pos += got

    def _recv_into(self, view: memoryview, spin: bool = True, flags: int = 0) -> int:
        spin = spin and self.spin > 0 and (self.spinner is None or self.spinner.acquire(False))
        if spin:
            deadline = time.perf_counter() + self.spin
            try:
                while True:
                    try:
                        return self.sock.recv_into(view, 0, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        if time.perf_counter() > deadline:
                            break
            finally:
                if self.spinner is not None:
                    self.spinner.release()
        try:
            got = self.sock.recv_into(view, 0, flags)
        except BlockingIOError:
            raise TimeoutError("the peer sent nothing in time") from None
        if spin and self.spin_max > self.spin_min:
            slept = time.perf_counter() - deadline
            self.spin = min(self.spin * 2, self.spin_max) if self.spin + slept <= self.spin_max \
                else max(self.spin / 2, self.spin_min)
        return got

    def skip(self, n: int) -> None:
        """Consume and drop `n` bytes (the data of a request that was refused)."""
        while n:
            chunk = min(n, len(self._buf))
            self.read_exact(chunk)
            n -= chunk


def send_all(sock: socket.socket, buffers: Sequence[Buffer]) -> None:
    """Send every byte of `buffers`, in order, without joining them."""
    while buffers:
        try:
            sent = sock.sendmsg(buffers[:IOV_MAX])
        except BlockingIOError:
            raise TimeoutError("the peer does not take the data") from None
        if len(buffers) <= IOV_MAX and sent == sum([_nbytes(b) for b in buffers]):
            return  # the usual case: all of it at once
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]
        buffers = views


IOV_MAX = 512  # buffers per sendmsg (Linux takes up to 1024)


def _nbytes(b: Buffer) -> int:
    return len(b) if type(b) is bytes or type(b) is bytearray else memoryview(b).nbytes


def send_file(sock: socket.socket, fd: int, offset: int, length: int) -> None:
    """Send `length` bytes of file `fd` from `offset` with `sendfile`: the kernel hands the
    pages to the socket, no copy through user space."""
    end = offset + length
    while offset < end:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, end - offset)
        except BlockingIOError:
            raise TimeoutError("the peer does not take the data") from None
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
