"""The Python face of crailpy's RDMA library (native/crail_rdma.c, bound by cffi).

`Listener` is what a DRAM datanode serves its pool with; `Connection` is a
client's queue pair to one datanode. Buffers are registered as they are,
through `ffi.from_buffer`: a bytearray, memoryview or numpy array is never
copied. The C calls release the GIL, so waiting for completions blocks only
the waiting thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from crailpy.errors import CrailError, Unreachable

try:
    from crailpy._rdma import ffi, lib
except ImportError:  # installed without libibverbs/librdmacm headers: TCP only
    ffi = lib = None

_ERRLEN = 256
SCRATCH = lib.CRAIL_SCRATCH if lib is not None else 0  # the most `Remote.transfer_now` moves
TIMED_OUT = -2  # the status of a transfer that no completion ended in time
REMOTE_ACCESS_ERROR = 10  # IBV_WC_REM_ACCESS_ERR: the key or address is not (or no longer) valid


class RdmaError(CrailError, ConnectionError):
    """RDMA could not be set up, or a connection failed."""


def unavailable() -> str | None:
    """Why this process cannot use RDMA, or None if it can."""
    if lib is None:
        return "crailpy was installed without its RDMA library (libibverbs-dev, librdmacm-dev)"
    if lib.crail_devices() == 0:
        return "no RDMA device"
    return None


def _check(result: Any, err: Any, failed: Any) -> Any:
    if result == failed:
        raise RdmaError(ffi.string(err).decode(errors="replace"))
    return result


class MemoryRegion:
    """A registered buffer. It keeps the buffer's export alive until `close()`."""

    def __init__(self, handle: Any, pinned: Any, length: int) -> None:
        self._handle = handle
        self._pinned = pinned  # the cdata from ffi.from_buffer: the memory stays put
        self.address = int(lib.crail_mr_addr(handle))
        self.lkey = int(lib.crail_mr_lkey(handle))
        self.rkey = int(lib.crail_mr_rkey(handle))
        self.length = length

    def close(self) -> None:
        if self._handle is not None:
            lib.crail_deregister(self._handle)
            ffi.release(self._pinned)
            self._handle = self._pinned = None


def _pin(buffer: Any, writable: bool) -> tuple[Any, Any, int]:
    """cffi's view of `buffer` for a registration: (the view that keeps its memory
    exported, a pointer to its first byte, its length).

    A memoryview is looked through to the object it views. A cffi view of a memoryview
    must never be freed by the cycle collector: CPython 3.11's memoryview lets go of its
    memory when cleared with exports still open, and freeing the view then reads a NULL
    pointer. A datanode or connection dropped without `close()` is cyclic garbage. The
    objects memoryviews stand on (bytearray, mmap, numpy arrays) have no such clear.
    """
    view = ffi.from_buffer("char[]", buffer, require_writable=writable)
    if not isinstance(buffer, memoryview):
        return view, view, len(view)
    try:
        whole = ffi.from_buffer("char[]", buffer.obj, require_writable=writable)
    except (TypeError, ValueError, BufferError):  # no object, or not viewable whole
        return view, view, len(view)
    start = ffi.cast("char *", view) - ffi.cast("char *", whole)
    length = len(view)
    ffi.release(view)
    if not 0 <= start <= len(whole) - length:
        ffi.release(whole)
        raise ValueError("a memoryview that lies outside the object it views")
    return whole, whole + start, length


def _region(handle: Any, err: Any, pinned: Any, length: int) -> MemoryRegion:
    if handle == ffi.NULL:
        ffi.release(pinned)  # the registration failed: nothing holds the memory
    return MemoryRegion(_check(handle, err, ffi.NULL), pinned, length)


class Listener:
    """A datanode's RDMA side: it registers the pool and accepts queue pairs.

    A thread handles connection events; reads and writes are served by the
    device, with no work here.
    """

    def __init__(self, host: str, port: int) -> None:
        reason = unavailable()
        if reason:
            raise RdmaError(reason)
        err = ffi.new("char[]", _ERRLEN)
        self._handle = _check(lib.crail_listen(host.encode(), port, err, _ERRLEN), err, ffi.NULL)
        self.port = int(lib.crail_listener_port(self._handle))
        self.device = ffi.string(lib.crail_listener_device(self._handle)).decode()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, buffer: Any) -> MemoryRegion:
        err = ffi.new("char[]", _ERRLEN)
        pinned, start, length = _pin(buffer, writable=True)
        handle = lib.crail_listener_register(self._handle, start, length, err, _ERRLEN)
        return _region(handle, err, pinned, length)

    def start(self) -> "Listener":
        self._thread = threading.Thread(target=self._serve, name="rdma-listener", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        err = ffi.new("char[]", _ERRLEN)
        while not self._stopped.is_set():
            _check(lib.crail_listener_serve(self._handle, 200, err, _ERRLEN), err, -1)

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        if self._handle is not None:
            lib.crail_listener_close(self._handle)
            self._handle = None


class Connection:
    """A client's reliable queue pair to one datanode's listener."""

    def __init__(self, host: str, port: int, depth: int, timeout: float) -> None:
        reason = unavailable()
        if reason:
            raise RdmaError(reason)
        err = ffi.new("char[]", _ERRLEN)
        handle = lib.crail_connect(host.encode(), port, depth, int(timeout * 1000), err, _ERRLEN)
        if handle == ffi.NULL:
            raise Unreachable(f"rdma {host}:{port}: {ffi.string(err).decode(errors='replace')}")
        # `close` frees the queue pair; the struct of a closed one goes with the last
        # reference (a `Remote` may hold one), so that a late call answers "closed", not a
        # crash. One never closed is left alone at collection, as before (crail_free).
        self._handle = ffi.gc(handle, lib.crail_free)
        self.device = ffi.string(lib.crail_conn_device(handle)).decode()
        self._completions = ffi.new("crail_completion[]", 32)
        self._err = ffi.new("char[]", _ERRLEN)

    def register(self, buffer: Any, writable: bool) -> MemoryRegion:
        err = ffi.new("char[]", _ERRLEN)
        pinned, start, length = _pin(buffer, writable)
        handle = lib.crail_register(self._handle, start, length, int(writable), err, _ERRLEN)
        return _region(handle, err, pinned, length)

    def ops(self, size: int) -> Any:
        """Room for `size` work requests (`crail_op`), filled in place and given to `post_poll`."""
        return ffi.new("crail_op[]", size)

    def post_poll(self, ops: Any, n: int, timeout: float, spin_us: int) -> list[tuple[int, int]]:
        """Post the first `n` of `ops`, then wait up to `timeout` seconds for completions:
        as (id, status), [] on timeout. One thread at a time: the caller holds a lock."""
        if self._handle is None:
            raise RdmaError("the connection is closed")
        n = _check(lib.crail_post_poll(self._handle, ops, n, self._completions, 32,
                                       int(timeout * 1000), spin_us, self._err, _ERRLEN),
                   self._err, -1)
        return [(c.id, c.status) for c in self._completions[0:n]]

    @property
    def error(self) -> str:
        """Why the last call failed."""
        return ffi.string(self._err).decode(errors="replace")

    @property
    def failed(self) -> bool:
        return self._handle is None or bool(lib.crail_conn_failed(self._handle))

    def close(self) -> None:
        if self._handle is not None:
            lib.crail_close(self._handle)
            self._handle = None


class Remote:
    """The memory under `rkey` at `address` of a connection's peer, for transfers waited
    for at once: each is one C call (`crail_transfer`) from posting to completion,
    through the connection's registered scratch, with no Python in between. It goes
    only with the queue pair to itself (nothing else posted or polled, `SCRATCH` bytes
    at most) and otherwise answers None, having done nothing: the caller goes the
    general way. Any thread may call it; it holds no Python lock.

    `failed(status)` is called when a transfer fails, with the failed completion's
    status, `TIMED_OUT`, or -1 (see `Connection.error`); it raises, or answers None.
    `wrote(last_byte, rkey)` is told of every WRITE done.
    """

    __slots__ = ("_handle", "_err", "_address", "_rkey", "_timeout_ms", "_spin_us", "_failed",
                 "_wrote")

    def __init__(self, conn: Connection, address: int, rkey: int, timeout_ms: int,
                 spin_us: int, failed: Callable[[int], None],
                 wrote: Callable[[int, int], None]) -> None:
        self._handle = ffi.NULL if conn._handle is None else conn._handle
        self._err = conn._err
        self._address, self._rkey = address, rkey
        self._timeout_ms, self._spin_us = timeout_ms, spin_us
        self._failed, self._wrote = failed, wrote

    def transfer_now(self, offset: int, buf: Any, write: int = 0) -> int | None:
        """READ `len(buf)` bytes at `offset` into `buf`, or WRITE them there (`write` is
        `CRAIL_WRITE` or `CRAIL_WRITE_PLACED`, see crail_rdma.h): the number of bytes
        moved, or None."""
        # The view is let go of when the call returns, as its only reference goes.
        status = lib.crail_transfer(self._handle, ffi.from_buffer("char[]", buf, not write),
                                    len(buf), self._address + offset, self._rkey, write,
                                    self._timeout_ms, self._spin_us, self._err, _ERRLEN)
        if status == 0:
            return len(buf)
        return None if status == lib.CRAIL_NOT_NOW else self._failed(status)

    read_now = transfer_now  # `write` stays False: a read's latency has no frame more

    def write_now(self, offset: int, data: Any, placed: bool = False) -> int | None:
        """WRITE `data` at `offset`, done once acknowledged, or once `placed` in the
        datanode's memory with every WRITE done before it on the queue pair (the 1-byte
        READ behind it, in the same C call)."""
        done = self.transfer_now(offset, data, lib.CRAIL_WRITE_PLACED if placed else lib.CRAIL_WRITE)
        if done:
            self._wrote(self._address + offset + done - 1, self._rkey)
        return done


def status_text(status: int) -> str:
    return ffi.string(lib.crail_status_str(status)).decode()
