"""A userspace NVMe/TCP initiator: one controller, an admin queue and I/O queues over TCP.

It speaks to any NVMe-oF TCP target (Linux nvmet, SPDK, crailpy's own) with
the codec of `crailpy.protocol.nvme_tcp`: ICReq/ICResp, Fabrics Connect,
Property Get/Set to enable the controller, Identify, then Read and Write
with data in C2HData PDUs and, for writes, R2T and H2CData. Python brings
each queue up; from then on its PDUs are moved by crailpy's native engine
(native/nvme_tcp.c) between the socket and the caller's buffers, with the GIL
released: in Python the same work cost more than the target's (docs/nvmf.md).

Each queue keeps up to its depth of commands in flight (64 on the I/O queue);
a thread sends Keep Alive at half the keep-alive timeout.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from typing import Any, NamedTuple

from crailpy.errors import CrailError, Unreachable
from crailpy.netio import SocketReader, send_all
from crailpy.protocol import nvme_tcp as t

try:
    from crailpy._nvme_tcp import ffi, lib
except ImportError:  # installed without a C compiler
    ffi = lib = None

ENGINE_MISSING = ("crailpy was installed without its NVMe/TCP engine (crailpy._nvme_tcp): "
                  "install a C compiler and reinstall crailpy")

ADMIN_DEPTH = 32  # commands in flight on the admin queue
IO_DEPTH = 64  # and on the I/O queue
NO_MDTS = 128 << 10  # bytes per command where the controller states no limit
MAX_NLB = 1 << 16  # LBAs per Read or Write: its block count is a 16-bit field
KATO_MS = 10_000  # the controller gives up on us after this long without a command

# opcodes
FABRICS, IDENTIFY, KEEP_ALIVE = 0x7F, 0x06, 0x18
WRITE, READ = 0x01, 0x02
CONNECT, PROPERTY_GET, PROPERTY_SET = 0x01, 0x04, 0x00  # fabrics command types
CAP, CC, CSTS = 0x00, 0x14, 0x1C  # controller properties


class NvmeError(CrailError, OSError):
    """The controller failed a command (its status is in the message)."""


class Namespace(NamedTuple):
    nsid: int
    blocks: int
    block_size: int
    step: int  # the most bytes one command moves: whole blocks, up to MDTS and MAX_NLB


class Command:
    """One command in flight (`Queue.submit`): its record, which the engine fills in when
    the command completes, and the cffi views of its buffers, which the engine may use
    until then. A Read or Write of one command is handed to the caller as it is, with
    `result()`, as an `Io` would be: no more objects on the hot path than this one."""

    __slots__ = ("queue", "record", "_into", "_out", "length", "offset")

    def __init__(self, queue: "Queue", record: Any, into: Any, out: Any, length: int,
                 offset: int) -> None:
        self.queue, self.record, self._into, self._out = queue, record, into, out
        self.length, self.offset = length, offset

    def wait(self) -> int:
        """Wait for it: its status (0 is success)."""
        queue = self.queue
        status = lib.nvt_wait(queue._engine, self.record)
        if queue._in_flight.pop(self.record, None) is not None:  # let go of the views now,
            if self._into is not None:  # not in a garbage collection: cffi crashed there,
                ffi.release(self._into)  # releasing views of memoryviews already freed
            if self._out is not None:
                ffi.release(self._out)
        if status < 0:
            raise queue._error()
        return status

    def result(self) -> int:
        """For a Read or Write: wait, and its length, or why it failed."""
        if status := self.wait():
            raise _failed(status, f"{'write' if self._into is None else 'read'} of "
                                  f"{self.length} bytes at byte {self.offset}")
        return self.length


class Queue:
    """One NVMe/TCP connection: a submission and completion queue pair.

    Python brings the connection up (ICReq/ICResp, with the shared codec); the
    native engine gives commands their ids, up to `depth` in flight, and moves
    every later PDU with the GIL released. Waiting is caller-driven, as on the
    namenode's channels: the first thread to wait reads the socket for all.
    """

    def __init__(self, host: str, port: int, timeout: float, depth: int) -> None:
        if lib is None:
            raise Unreachable(f"nvme/tcp {host}:{port}: {ENGINE_MISSING}")
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"nvme/tcp {host}:{port}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.where = f"{host}:{port}"
        try:
            resp = self._initialize()
        except (OSError, t.TransportError) as exc:
            self.sock.close()
            raise Unreachable(f"nvme/tcp {self.where}: {exc}") from None
        engine = lib.nvt_open(self.sock.fileno(), depth, resp.maxh2cdata, resp.cpda,
                              max(int(timeout * 1000), 1))
        if engine == ffi.NULL:
            self.sock.close()
            raise Unreachable(f"nvme/tcp {self.where}: the socket could not be set up")
        self._engine = ffi.gc(engine, lib.nvt_free)
        self._in_flight: dict[Any, Command] = {}  # alive while the engine may write into them

    def _initialize(self) -> t.ICResp:
        """ICReq and the controller's ICResp, with the shared codec."""
        send_all(self.sock, t.encode(t.PduType.IC_REQ, t.ICReq()))
        reader, decoder = SocketReader(self.sock, greedy=False), t.PduDecoder(t.PduDecoder.FROM_CONTROLLER)
        common = bytes(reader.read_exact(t.COMMON.size))
        decoder.check_header(*t.COMMON.unpack(common))
        decoder.feed(common + bytes(reader.read_exact(t.COMMON.unpack(common)[4] - t.COMMON.size)))
        resp = decoder.next_pdu().body
        if not isinstance(resp, t.ICResp) or resp.pfv != t.PFV or resp.digests:
            raise Unreachable(f"nvme/tcp {self.where}: unexpected connection answer {resp}")
        return resp

    def submit(self, sqe: bytes, data_out: bytes | memoryview = b"",
               data_in: memoryview | None = None, in_capsule: bool = False,
               offset: int = 0) -> Command:
        """Send one command, `sqe` its 64-byte entry (its id and SGL are filled in here).
        `data_out` goes in the capsule or on R2T; C2HData lands in `data_in`; both must
        stay untouched until its `wait` returns. With the queue full, this waits.
        `offset`: the byte a Read or Write starts at, for its error message."""
        record = ffi.new("nvt_command *")
        if data_in is None:  # the command keeps None where C is given NULL
            out = ffi.from_buffer("char[]", data_out) if data_out else None
            command = self._in_flight[record] = Command(self, record, None, out, len(data_out),
                                                        offset)
            failed = lib.nvt_submit(self._engine, record, sqe, ffi.NULL, 0,
                                    ffi.NULL if out is None else out, len(data_out), in_capsule)
        else:
            into = _into(data_in)
            command = self._in_flight[record] = Command(self, record, into, None, len(data_in),
                                                        offset)
            failed = lib.nvt_submit(self._engine, record, sqe, into, len(data_in), ffi.NULL, 0,
                                    in_capsule)
        if failed:
            command.wait()  # the queue failed: this raises why, and lets go
        return command

    def rw(self, write: bool, nsid: int, slba: int, blocks: int, buf: memoryview,
           in_capsule: bool = False) -> int:
        """A Read into `buf` (or a Write of it) of `blocks` blocks from `slba`, submitted and
        waited for in one call into the engine, which builds its entry: the status. One
        I/O at a time gained by each Python call taken off this path (docs/benchmarks.md)."""
        # The view is an argument only: it is let go of as the call returns.
        status = lib.nvt_rw(self._engine, write, nsid, slba, blocks,
                            ffi.from_buffer("char[]", buf) if write else _into(buf), len(buf),
                            in_capsule)
        if status < 0:
            raise self._error()
        return status

    def _error(self) -> Unreachable:
        return Unreachable(f"nvme/tcp {self.where}: {ffi.string(lib.nvt_error(self._engine)).decode()}")

    @property
    def broken(self) -> bool:
        return bool(lib.nvt_failed(self._engine))

    def execute(self, command: t.Command, data_out: bytes | memoryview = b"",
                data_in: memoryview | None = None, in_capsule: bool = False) -> t.Completion:
        submitted = self.submit(command.encode(), data_out, data_in, in_capsule)
        status = submitted.wait()
        return t.Completion(submitted.record.cid, status, submitted.record.result)

    def close(self) -> None:
        lib.nvt_shutdown(self._engine)  # every thread in the engine has left when it returns
        self.sock.close()


def _into(data_in: memoryview) -> Any:
    """The engine's view of where a command's C2HData lands."""
    if data_in.readonly:
        raise ValueError("nvme/tcp: a read into a read-only buffer")
    return ffi.from_buffer("char[]", data_in)


def _check(completion: t.Completion, what: str) -> t.Completion:
    if not completion.ok:
        raise _failed(completion.status, what)
    return completion


def _failed(status: int, what: str) -> NvmeError:
    """The error of a command that ended with `status`, not 0."""
    sct, sc = status >> 8 & 0x7, status & 0xFF
    return NvmeError(f"{what}: status type {sct:#x}, code {sc:#x}")


class Io:
    """The commands of one read or write of several commands (or of partly covered
    blocks) in flight; `result()` waits for them all."""

    __slots__ = ("verb", "offset", "length", "commands", "copies")

    def __init__(self, verb: str, offset: int, length: int) -> None:
        self.verb, self.offset, self.length = verb, offset, length
        self.commands: list[Command] = []
        self.copies: list[tuple[memoryview, memoryview]] = []  # (caller's bytes, from a block buffer)

    def result(self) -> int:
        failures = []
        for command in self.commands:  # wait for all, so that none lands in the buffer later
            try:
                if status := command.wait():
                    failures.append(_failed(status, f"{self.verb} of {self.length} bytes at "
                                                    f"byte {self.offset}"))
            except (CrailError, OSError) as exc:
                failures.append(exc)
        self.commands.clear()
        if failures:
            raise failures[0]
        for dest, edge in self.copies:
            dest[:] = edge
        self.copies.clear()
        return self.length


class Controller:
    """An NVMe controller of a subsystem (by NQN) at host:port, with one I/O queue."""

    def __init__(self, host: str, port: int, subnqn: str, timeout: float = 10.0,
                 hostnqn: str | None = None, kato_ms: int = KATO_MS) -> None:
        self.host, self.port, self.subnqn, self.timeout = host, port, subnqn, timeout
        self.hostid = uuid.uuid4().bytes
        self.hostnqn = hostnqn or f"nqn.2014-08.org.nvmexpress:uuid:{uuid.UUID(bytes=self.hostid)}"
        self.kato_ms = kato_ms
        self.admin = Queue(host, port, timeout, ADMIN_DEPTH)
        self.cntlid = self._connect(self.admin, 0, ADMIN_DEPTH + 1, 0xFFFF)
        self._stopped = threading.Event()
        threading.Thread(target=self._keep_alive, name="nvme-keep-alive", daemon=True).start()
        cap = self._enable()
        identify = self.identify(1)
        # Writes up to this size travel in the command capsule (IOCCSZ, in 16-byte units, counts
        # the 64-byte command). Linux nvmet waits for such writes' data in the capsule.
        self.in_capsule = max(struct.unpack_from("<I", identify, 1792)[0] * 16 - 64, 0)
        # The most bytes one command may move: 2^MDTS pages of CAP.MPSMIN. MDTS 0 states no
        # limit, but Linux nvmet failed single writes of 1 MiB and more to some files with
        # Data SGL Length Invalid: such targets get 128 KiB commands, all sent at once.
        mdts = identify[77]
        self.max_transfer = (4096 << (cap >> 48 & 0xF)) << mdts if mdts else NO_MDTS
        self.io = Queue(host, port, timeout, IO_DEPTH)
        self._connect(self.io, 1, 2 * IO_DEPTH, self.cntlid)
        self._edges = threading.Lock()  # read-modify-write of partly covered blocks

    def _keep_alive(self) -> None:
        """Keep Alive at half the timeout, so that an idle controller is not torn down."""
        while not self._stopped.wait(self.kato_ms / 2000):
            try:
                _check(self.admin.execute(t.Command(KEEP_ALIVE)), "keep alive")
            except (CrailError, OSError):
                return  # the admin queue failed: the next command says so

    def _connect(self, queue: Queue, qid: int, entries: int, cntlid: int) -> int:
        kato = self.kato_ms if qid == 0 else 0
        # SQ flow control off: our depth bounds what is in flight, and reads may end
        # with C2HData alone, one PDU less
        fields = struct.pack("<HHHBxI", 0, qid, entries - 1, t.DISABLE_SQ_FLOW, kato).ljust(24, b"\0")
        data = bytearray(1024)
        data[0:16] = self.hostid
        struct.pack_into("<H", data, 16, cntlid)
        nqn = self.subnqn.encode()
        data[256 : 256 + len(nqn)] = nqn
        host = self.hostnqn.encode()
        data[512 : 512 + len(host)] = host
        done = queue.execute(t.Command(FABRICS, nsid=CONNECT, cdw10=fields), bytes(data),
                             in_capsule=True)
        return _check(done, f"connect queue {qid} of {self.subnqn}").result & 0xFFFF

    def get_property(self, offset: int, size8: bool) -> int:
        fields = struct.pack("<B3xI", int(size8), offset).ljust(24, b"\0")
        done = self.admin.execute(t.Command(FABRICS, nsid=PROPERTY_GET, cdw10=fields))
        return _check(done, f"property get {offset:#x}").result

    def set_property(self, offset: int, value: int) -> None:
        fields = struct.pack("<B3xIQ", 0, offset, value).ljust(24, b"\0")
        _check(self.admin.execute(t.Command(FABRICS, nsid=PROPERTY_SET, cdw10=fields)),
               f"property set {offset:#x}")

    def _enable(self) -> int:
        """Enable the controller and wait until it is ready; its CAP property."""
        cap = self.get_property(CAP, True)
        timeout = max((cap >> 24 & 0xFF) * 0.5, self.timeout)  # CAP.TO is in 500 ms units
        self.set_property(CC, 1 | 6 << 16 | 4 << 20)  # EN, IOSQES 64 bytes, IOCQES 16 bytes
        deadline = time.monotonic() + timeout
        while not self.get_property(CSTS, False) & 1:
            if time.monotonic() > deadline:
                raise Unreachable(f"nvme/tcp {self.host}:{self.port}: the controller never got ready")
            time.sleep(0.01)
        return cap

    def identify(self, cns: int, nsid: int = 0) -> bytes:
        buf = bytearray(4096)
        cdw10 = struct.pack("<I", cns).ljust(24, b"\0")
        _check(self.admin.execute(t.Command(IDENTIFY, nsid=nsid, cdw10=cdw10),
                                  data_in=memoryview(buf)), f"identify cns {cns}")
        return bytes(buf)

    def namespace(self, nsid: int = 1) -> Namespace:
        raw = self.identify(0, nsid)
        blocks = struct.unpack_from("<Q", raw, 0)[0]
        lbaf = raw[26] & 0xF
        block_size = 1 << raw[128 + 4 * lbaf + 2]
        most = min(self.max_transfer, MAX_NLB * block_size)
        return Namespace(nsid, blocks, block_size, max(most // block_size * block_size, block_size))

    def read(self, ns: Namespace, lba: int, dest: memoryview) -> None:
        """Read whole blocks from `lba` into `dest`."""
        self.pread(ns, lba * ns.block_size, dest)

    def write(self, ns: Namespace, lba: int, data: memoryview) -> None:
        """Write whole blocks at `lba`."""
        self.pwrite(ns, lba * ns.block_size, data)

    def pread(self, ns: Namespace, offset: int, dest: memoryview) -> None:
        if not self._one_command(ns, offset, len(dest)):
            self.start_read(ns, offset, dest).result()
        elif status := self.io.rw(False, ns.nsid, offset // ns.block_size,
                                  len(dest) // ns.block_size, dest):
            raise _failed(status, f"read of {len(dest)} bytes at byte {offset}")

    def pwrite(self, ns: Namespace, offset: int, data: memoryview) -> None:
        if not self._one_command(ns, offset, len(data)):
            self.start_write(ns, offset, data).result()
        elif status := self.io.rw(True, ns.nsid, offset // ns.block_size,
                                  len(data) // ns.block_size, data, len(data) <= self.in_capsule):
            raise _failed(status, f"write of {len(data)} bytes at byte {offset}")

    def _one_command(self, ns: Namespace, offset: int, size: int) -> bool:
        """Whether [offset, offset + size) is whole blocks that one command moves."""
        bs = ns.block_size
        return not offset % bs and not size % bs and size <= ns.step

    def start_read(self, ns: Namespace, offset: int, dest: memoryview) -> Io | Command:
        """Start reading `len(dest)` bytes at byte `offset`, aligned or not: whole blocks
        land in `dest` directly, a partly covered first or last block comes through a
        block buffer. One command per `max_transfer` bytes, all in flight at once."""
        if self._one_command(ns, offset, len(dest)):  # the common case: the command itself
            return self._command(READ, ns, offset // ns.block_size, dest)
        io = Io("read", offset, len(dest))
        for lba, within, piece in self._split(ns, offset, dest):
            if within is None:
                self._submit(io, READ, ns, lba, piece)
            else:
                edge = memoryview(bytearray(ns.block_size))
                self._submit(io, READ, ns, lba, edge)
                io.copies.append((piece, edge[within : within + len(piece)]))
        return io

    def start_write(self, ns: Namespace, offset: int, data: memoryview) -> Io | Command:
        """Start writing `data` at byte `offset`, aligned or not. Whole blocks go in the
        capsule if they fit, else on the target's R2T; a partly covered block is read,
        patched and written back before this returns, one at a time per controller, so
        that two writes sharing a block do not undo each other (a writer on another
        controller must not share blocks: crailpy's chunks are 4 KiB aligned)."""
        if self._one_command(ns, offset, len(data)):  # the common case: the command itself
            return self._command(WRITE, ns, offset // ns.block_size, data)
        io = Io("write", offset, len(data))
        for lba, within, piece in self._split(ns, offset, data):
            if within is None:
                self._submit(io, WRITE, ns, lba, piece)
                continue
            with self._edges:
                edge = memoryview(bytearray(ns.block_size))
                self.start_read(ns, lba * ns.block_size, edge).result()
                edge[within : within + len(piece)] = piece
                self.start_write(ns, lba * ns.block_size, edge).result()
        return io

    @staticmethod
    def _split(ns: Namespace, offset: int, buf: memoryview) -> list[tuple[int, int | None, memoryview]]:
        """(block, offset within it or None for whole blocks, the part of `buf`) covering
        [offset, offset + len(buf)): at most a partial block, a run of whole ones, a partial one."""
        bs, end, out = ns.block_size, offset + len(buf), []
        position = offset
        while position < end:
            lba, within = divmod(position, bs)
            if within == 0 and end - position >= bs:
                run = (end - position) // bs * bs
                out.append((lba, None, buf[position - offset : position - offset + run]))
                position += run
            else:
                n = min(bs - within, end - position)
                out.append((lba, within, buf[position - offset : position - offset + n]))
                position += n
        return out

    def _submit(self, io: Io, opcode: int, ns: Namespace, lba: int, buf: memoryview) -> None:
        """Submit whole blocks of `buf` at `lba`, in commands of at most `max_transfer` and
        MAX_NLB blocks (nvmet gives a namespace on 9p 1-byte LBAs, so the second can bind)."""
        step = ns.step
        for start in range(0, len(buf), step):
            io.commands.append(self._command(opcode, ns, lba + start // ns.block_size,
                                             buf[start : start + step]))

    def _command(self, opcode: int, ns: Namespace, lba: int, buf: memoryview) -> Command:
        """One Read or Write of the whole blocks of `buf` from `lba`, submitted."""
        sqe = t.read_write(opcode, ns.nsid, lba, len(buf) // ns.block_size)
        if opcode == READ:
            return self.io.submit(sqe, data_in=buf, offset=lba * ns.block_size)
        return self.io.submit(sqe, buf, in_capsule=len(buf) <= self.in_capsule,
                              offset=lba * ns.block_size)

    @property
    def broken(self) -> bool:
        return self.io.broken or self.admin.broken

    def close(self) -> None:
        self._stopped.set()
        for queue in (self.io, self.admin):
            queue.close()
