"""The RDMA transport: one-sided READs and WRITEs straight into a datanode's pool.

The caller's buffer is registered as it is for the length of one transfer, and
the device moves the bytes: no copy on either side, and the datanode's CPU is
not involved. Transfers under 64 KiB are copied through registered staging
slots instead, which costs less than registering. A WRITE is done when the
datanode's device acknowledged it; `confirm()` then makes sure that every WRITE
so far is placed in the datanode's memory with one 1-byte READ on the same queue
pair (Crail's trick, which Crail chains behind each WRITE): a responder executes
requests in order, so the READ's answer leaves only after the WRITEs before it
are in memory. A writer confirms each endpoint it wrote through before COMMIT.

Work requests are written into a preallocated array and posted by whoever
waits next, together with the poll for completions: one C call, without the
GIL, and one doorbell for every transfer started since. Waiting is
caller-driven like the TCP channel's: whoever waits settles every transfer it
finds completed.
"""

from __future__ import annotations

import itertools
import threading
import time

from crailpy import verbs
from crailpy.config import ClientConfig
from crailpy.errors import Displaced, Stale, Timeout, Unreachable
from crailpy.protocol.messages import Block, DatanodeInfo
from crailpy.transports import check_owner


# Transfers below this size go through registered staging slots: copying them
# costs less than registering and deregistering the caller's buffer, a pair of
# system calls (150 us for 4 KiB in the test-bed VM). Larger ones move straight
# from or into the caller's buffer, registered as it is for the transfer.
SMALL = 64 << 10


class _Staging:
    """Registered slots for transfers below `SMALL` bytes, one per transfer in flight."""

    def __init__(self, conn: verbs.Connection, slots: int) -> None:
        self._buffer = bytearray(slots * SMALL)
        self.view = memoryview(self._buffer)
        self.memory = conn.register(self._buffer, writable=True)
        self._free = list(range(slots))

    def take(self) -> int | None:
        return self._free.pop() if self._free else None

    def give(self, slot: int) -> None:
        self._free.append(slot)

    def slot(self, slot: int, length: int) -> memoryview:
        return self.view[slot * SMALL : slot * SMALL + length]


class RdmaTransfer:
    """One block transfer: through a staging slot, or straight from/into the caller's buffer."""

    def __init__(self, endpoint: "RdmaEndpoint", length: int) -> None:
        self._endpoint = endpoint
        self.memory: verbs.MemoryRegion | None = None  # the caller's buffer, registered
        self.slot: int | None = None  # or a staging slot
        self.copy_to: memoryview | None = None  # a staged read: where its bytes go
        self.wr_id = 0  # its work request, once posted
        self.length = length
        self.error: BaseException | None = None
        self.done = length == 0

    def settle(self, error: BaseException | None) -> None:
        """The device is done with the buffer. Called with the endpoint's lock held."""
        if self.done:
            return
        self.error, self.done = error, True
        if self.memory is not None:
            self.memory.close()  # unpin the caller's buffer
            self.memory = None
        if self.slot is not None:
            staging = self._endpoint._staging
            if self.copy_to is not None and error is None:
                self.copy_to[:] = staging.slot(self.slot, self.length)
            staging.give(self.slot)
            self.slot = self.copy_to = None

    def result(self) -> int:
        if not self.done:
            self._endpoint._wait(self)
        if self.error is not None:
            raise self.error
        return self.length


class RdmaEndpoint:
    name = "rdma"

    def __init__(self, datanode: DatanodeInfo, config: ClientConfig) -> None:
        self.datanode = datanode
        self._config = config
        self._depth = max(2 * config.inflight, 32)  # work requests in flight
        self._conn = verbs.Connection(datanode.host, datanode.rdma.port, self._depth,
                                      config.connect_timeout)
        self._fence = bytearray(1)  # where `confirm`'s READ lands
        self._staging = _Staging(self._conn, self._depth)
        self._lock = threading.Lock()  # the table of transfers in flight, the unposted work
        self._poll_lock = threading.Lock()  # one poller (and poster) at a time
        self._ids = itertools.count(1)
        self._in_flight: dict[int, RdmaTransfer] = {}
        # Work requests not posted yet: written into one array while the poller posts the
        # other. Starting a transfer waits while `_depth` are in flight, so a few threads
        # at once stay well inside.
        self._unposted, self._posting = self._conn.ops(4 * self._depth), self._conn.ops(4 * self._depth)
        self._count = 0
        self._failure: BaseException | None = None
        self._pool = datanode.rdma.address  # where block offsets count from
        # WRITEs posted, the last one's last byte (address, key), and how many are confirmed
        self._writes, self._last_write, self._placed = 0, (0, 0), 0
        self._timeout_ms, self._spin_us = int(config.io_timeout * 1000), config.spin_us

    def read(self, block: Block, offset: int, dest: memoryview) -> RdmaTransfer:
        return self._start(block, offset, dest, write=False)

    def write(self, block: Block, offset: int, data: memoryview) -> RdmaTransfer:
        return self._start(block, offset, data, write=True)

    def bind(self, block: Block) -> verbs.Remote:
        """`block`, for transfers waited for at once: with nothing else in flight on the
        queue pair and no more than its scratch holds, one C call from posting to
        completion. In the test-bed VM each microsecond of Python on this path costs a
        small read two to three, so what can be is worked out here, once per block."""
        check_owner(block, self.datanode)
        return verbs.Remote(self._conn, self._pool + block.offset, block.key, self._timeout_ms,
                            self._spin_us, self._failed_by, self._wrote)

    def read_now(self, block: Block, offset: int, dest: memoryview) -> int:
        done = self.bind(block).read_now(offset, dest)
        return self._start(block, offset, dest, False).result() if done is None else done

    def write_now(self, block: Block, offset: int, data: memoryview, placed: bool = False) -> int:
        bound = self.bind(block)
        done = bound.write_now(offset, data, placed)
        if done is None:
            done = self._start(block, offset, data, True).result()
            if placed:
                self.confirm()
        return done

    def _wrote(self, last_byte: int, rkey: int) -> None:
        """A WRITE of `bind`'s ended at `last_byte` under `rkey`: `confirm` covers it (one
        `placed` confirmed what its caller wrote before it, and says so to that caller)."""
        with self._lock:
            self._writes += 1
            self._last_write = (last_byte, rkey)

    def confirm(self) -> None:
        """Every WRITE this endpoint made so far is placed in the datanode's memory: one
        1-byte READ of the last one's last byte, answered only after them all. A READ (or
        any transfer since) refused for its key confirms it as well: the refusal came
        after the WRITEs before it were executed, and a key that the datanode dropped was
        deregistered, which waits for every access under it. Raises if the queue pair was
        lost without an answer (the WRITEs may not have landed)."""
        with self._lock:  # the WRITEs counted so far were all posted before the READ below
            writes, (last_byte, rkey) = self._writes, self._last_write
        if writes <= self._placed:
            return
        fence = memoryview(self._fence)
        try:  # one C call if the queue pair is free, else the general way
            if verbs.Remote(self._conn, last_byte, rkey, self._timeout_ms, self._spin_us,
                            self._failed_by, self._wrote).read_now(0, fence) is None:
                self._post(last_byte, rkey, fence, write=False).result()
        except Stale:
            pass
        with self._lock:
            self._placed = max(self._placed, writes)

    def _failed_by(self, status: int) -> None:
        """A transfer of `bind`'s failed with `status`: the queue pair fails with the error
        raised. If it had failed already, None: the general way finds a live endpoint."""
        with self._lock:
            if self._failure is not None:
                return None
            if status > 0:
                raise self._refused(status)
            self._fail(Timeout(f"rdma {self._where}: no completion in {self._config.io_timeout} s")
                       if status == verbs.TIMED_OUT
                       else Unreachable(f"rdma {self._where}: {self._conn.error}"))
            raise self._failure

    def _start(self, block: Block, offset: int, buf: memoryview, write: bool) -> RdmaTransfer:
        check_owner(block, self.datanode)
        return self._post(self._pool + block.offset + offset, block.key, buf, write)

    def _post(self, remote: int, rkey: int, buf: memoryview, write: bool) -> RdmaTransfer:
        transfer = RdmaTransfer(self, len(buf))
        if transfer.done:
            return transfer
        while len(self._in_flight) >= self._depth and self._failure is None:
            self._progress()  # the send queue holds twice this: room for other threads' posts
        if len(buf) >= SMALL:
            transfer.memory = self._conn.register(buf, writable=not write)
        with self._lock:
            if self._failure is not None:
                transfer.settle(self._failure)
                return transfer
            if transfer.memory is None:
                transfer.slot = self._staging.take()
                if transfer.slot is None:  # more threads than slots: register after all
                    transfer.memory = self._conn.register(buf, writable=not write)
            if transfer.memory is not None:
                local, lkey = transfer.memory.address, transfer.memory.lkey
            else:
                staged = self._staging.slot(transfer.slot, len(buf))
                if write:
                    staged[:] = buf
                else:
                    transfer.copy_to = buf
                local = self._staging.memory.address + transfer.slot * SMALL
                lkey = self._staging.memory.lkey
            transfer.wr_id = next(self._ids)
            self._add(transfer.wr_id, local, remote, lkey, rkey, len(buf), write, True)
            self._in_flight[transfer.wr_id] = transfer
            if write:
                self._writes += 1
                self._last_write = (remote + len(buf) - 1, rkey)
        return transfer

    def _add(self, wr_id: int, local: int, remote: int, lkey: int, rkey: int, length: int,
             write: bool, signaled: bool) -> None:
        """Write one work request into the unposted array. Called with `_lock` held."""
        op = self._unposted[self._count]
        op.id, op.local, op.remote, op.lkey, op.rkey = wr_id, local, remote, lkey, rkey
        op.length, op.write, op.signaled = length, write, signaled
        self._count += 1

    @property
    def _where(self) -> str:
        return f"{self.datanode.host}:{self.datanode.port} (rdma port {self.datanode.rdma.port})"

    def _wait(self, transfer: RdmaTransfer) -> None:
        deadline = time.monotonic() + self._config.io_timeout
        while not transfer.done:
            self._progress()
            if not transfer.done and time.monotonic() > deadline:
                with self._lock:
                    self._fail(Timeout(f"rdma {self._where}: no completion in "
                                       f"{self._config.io_timeout} s"))

    def _progress(self) -> None:
        """Post what was started, poll once and settle what completed.

        Lock order: `_poll_lock`, then `_lock`.
        """
        with self._poll_lock:
            with self._lock:
                if self._failure is not None:
                    return  # everything in flight was settled with it; the queue pair may be gone
                ops, count = self._unposted, self._count
                self._unposted, self._posting, self._count = self._posting, ops, 0
            try:
                completions = self._conn.post_poll(ops, count, 0.2, self._config.spin_us)
                if not completions and self._conn.failed:
                    completions = self._conn.post_poll(ops, 0, 0.2, 0)  # the flushed requests
            except verbs.RdmaError as exc:
                with self._lock:
                    self._fail(Unreachable(f"rdma {self._where}: {exc}"))
                return
            with self._lock:
                if not completions and self._conn.failed:
                    self._fail(Unreachable(f"rdma {self._where}: the connection failed"))
                for wr_id, status in completions:
                    transfer = self._in_flight.get(wr_id)
                    if transfer is None:
                        continue
                    if status:  # the queue pair has failed: nothing else on it will succeed
                        self._refused(status, transfer)
                        break
                    self._finish(transfer, None)

    def _finish(self, transfer: RdmaTransfer, error: BaseException | None) -> None:
        self._in_flight.pop(transfer.wr_id, None)
        transfer.settle(error)

    def _refused(self, status: int, transfer: RdmaTransfer | None = None) -> BaseException:
        """A completion failed with `status`: its transfer ends with the error returned, and
        the queue pair has failed with it, so every other transfer in flight ends too:
        `Displaced` after a refused key (STALE), which readers and writers try again on a
        new queue pair. Called with `_lock` held."""
        text = f"rdma {self._where}: {verbs.status_text(status)}"
        error = others = Unreachable(text)
        if status == verbs.REMOTE_ACCESS_ERROR:
            error = Stale(f"{text}: the datanode no longer grants this key and address")
            others = Displaced(f"rdma {self._where}: the connection failed under another "
                               "transfer's refused key")
        if transfer is not None:
            self._finish(transfer, error)
        self._fail(others)
        return error

    def _fail(self, error: BaseException) -> None:
        """The queue pair is unusable: every transfer in flight ends with `error`."""
        self._failure = self._failure or error
        self._count = 0  # nothing more is posted
        for transfer in list(self._in_flight.values()):
            self._finish(transfer, self._failure)

    @property
    def broken(self) -> bool:
        return self._failure is not None

    def close(self) -> None:
        """Fail what is in flight and free the queue pair, once no thread polls it."""
        with self._poll_lock, self._lock:
            self._fail(Unreachable(f"rdma {self._where}: closed"))
            self._conn.close()
            self._staging.memory.close()
