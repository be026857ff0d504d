"""A userspace NVMe/TCP initiator: one controller, an admin queue and I/O queues over TCP.

It speaks to any NVMe-oF TCP target (Linux nvmet, SPDK, crailpy's own) with
the codec of `crailpy.protocol.nvme_tcp`: ICReq/ICResp, Fabrics Connect,
Property Get/Set to enable the controller, Identify, then Read and Write
with data in C2HData PDUs and, for writes, R2T and H2CData. Data moves
between the socket and the caller's buffer without copies in Python.

Each queue keeps up to its depth of commands in flight (64 on the I/O queue);
a thread sends Keep Alive at half the keep-alive timeout.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid
from typing import NamedTuple

from crailpy.errors import CrailError, Unreachable
from crailpy.netio import SocketReader, send_all
from crailpy.protocol import nvme_tcp as t

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


class Pending:
    """A command in flight on a queue; `Queue.wait` ends it."""

    __slots__ = ("cid", "data_out", "data_in", "done", "completion", "error")

    def __init__(self, cid: int, data_out: bytes | memoryview, data_in: memoryview | None) -> None:
        self.cid, self.data_out, self.data_in = cid, memoryview(data_out), data_in
        self.done = False
        self.completion: t.Completion | None = None
        self.error: BaseException | None = None


class Queue:
    """One NVMe/TCP connection: a submission and completion queue pair.

    Up to `depth` commands are in flight. Waiting is caller-driven, as on the
    namenode's channels: a waiting thread reads PDUs and settles whichever
    command they belong to, answering R2Ts as they come.
    """

    def __init__(self, host: str, port: int, timeout: float, depth: int) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"nvme/tcp {host}:{port}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.where = f"{host}:{port}"
        self._reader = SocketReader(self.sock, greedy=False)  # C2HData goes straight to its buffer
        self._decoder = t.PduDecoder(t.PduDecoder.FROM_CONTROLLER, max_data=16 << 20)
        self._send_lock = threading.Lock()
        self._receive_lock = threading.Lock()
        self._lock = threading.Lock()  # the table of commands in flight
        self._pending: dict[int, Pending] = {}
        self._free_cids = list(range(depth))
        self._slots = threading.Semaphore(depth)
        self._broken: BaseException | None = None
        self._send(t.PduType.IC_REQ, t.ICReq())
        resp = self._receive().body
        if not isinstance(resp, t.ICResp) or resp.pfv != t.PFV or resp.digests:
            raise Unreachable(f"nvme/tcp {self.where}: unexpected connection answer {resp}")
        self.maxh2cdata = resp.maxh2cdata

    def _send(self, ptype: t.PduType, body: object, data: bytes | memoryview = b"",
              flags: int = 0) -> None:
        with self._send_lock:
            send_all(self.sock, t.encode(ptype, body, data, flags))

    def _receive(self, straight: bool = False) -> t.Pdu | None:
        """The next PDU. With `straight`, C2HData without a data digest is received straight
        into its command's buffer (no copy in Python), and None is returned for it."""
        common = bytes(self._reader.read_exact(t.COMMON.size))
        ptype, flags, hlen, pdo, plen = t.COMMON.unpack(common)
        self._decoder.check_header(ptype, flags, hlen, pdo, plen)
        if straight and ptype == t.PduType.C2H_DATA and not flags & t.Flag.DDGST:
            self._receive_data(common, flags, hlen, pdo, plen)
            return None
        self._decoder.feed(common + bytes(self._reader.read_exact(plen - t.COMMON.size)))
        pdu = self._decoder.next_pdu()
        if pdu.type is t.PduType.C2H_TERM_REQ:
            raise Unreachable(f"nvme/tcp {self.where}: the target ended the connection "
                              f"(fatal error status {pdu.body.fes:#x})")
        return pdu

    def _receive_data(self, common: bytes, flags: int, hlen: int, pdo: int, plen: int) -> None:
        head_end = hlen + (4 if flags & t.Flag.HDGST else 0)
        header = common + bytes(self._reader.read_exact(head_end - t.COMMON.size))
        if flags & t.Flag.HDGST and \
                struct.unpack_from("<I", header, hlen)[0] != t.crc32c(header[:hlen]):
            raise Unreachable(f"nvme/tcp {self.where}: bad header digest")
        head = t.DataHeader(*struct.unpack_from("<HHII", header, t.COMMON.size))
        start = max(pdo, head_end)
        pending = self._pending.get(head.cccid)
        dest = pending.data_in if pending is not None else None
        if dest is None or head.length != plen - start or head.offset + head.length > len(dest):
            raise Unreachable(f"nvme/tcp {self.where}: data outside the command's buffer")
        self._reader.skip(start - head_end)
        self._reader.readinto(dest[head.offset : head.offset + head.length])
        if flags & t.Flag.SUCCESS:
            self._finish(pending, t.Completion(head.cccid))

    def submit(self, command: t.Command, data_out: bytes | memoryview = b"",
               data_in: memoryview | None = None, in_capsule: bool = False) -> Pending:
        """Send one command. `data_out` goes in the capsule or on R2T; C2HData lands in
        `data_in`; both must stay untouched until `wait` returns."""
        while not self._slots.acquire(blocking=False):  # full: settle some, as a waiter would
            self._progress()
        with self._lock:
            if self._broken is not None:
                self._slots.release()
                raise self._broken
            pending = Pending(self._free_cids.pop(), data_out, data_in)
            self._pending[pending.cid] = pending
        if in_capsule:
            sgl, capsule = t.Sgl(0, len(data_out), t.Sgl.IN_CAPSULE), data_out
        else:
            sgl, capsule = t.Sgl(0, len(data_in) if data_in is not None else len(data_out),
                                 t.Sgl.TRANSPORT), b""
        try:
            self._send(t.PduType.CAPSULE_CMD, command._replace(cid=pending.cid, sgl=sgl), capsule)
        except OSError as exc:
            self._break(Unreachable(f"nvme/tcp {self.where}: {exc}"))
        return pending

    def wait(self, pending: Pending) -> t.Completion:
        while not pending.done:
            self._progress(pending)
        if pending.error is not None:
            raise pending.error
        return pending.completion

    def _progress(self, pending: Pending | None = None) -> None:
        """Receive one PDU, unless another thread is receiving (or `pending` is done)."""
        if self._broken is not None and pending is None:
            raise self._broken
        if self._receive_lock.acquire(timeout=0.05):
            try:
                if pending is None or not pending.done:
                    self._receive_one()
            except (OSError, Unreachable, t.TransportError) as exc:
                self._break(exc if isinstance(exc, Unreachable)
                            else Unreachable(f"nvme/tcp {self.where}: {exc}"))
            finally:
                self._receive_lock.release()

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def execute(self, command: t.Command, data_out: bytes | memoryview = b"",
                data_in: memoryview | None = None, in_capsule: bool = False) -> t.Completion:
        return self.wait(self.submit(command, data_out, data_in, in_capsule))

    def _receive_one(self) -> None:
        pdu = self._receive(straight=True)
        if pdu is None:  # C2HData, already in its buffer
            return
        head = pdu.body
        cid = head.cid if pdu.type is t.PduType.CAPSULE_RESP else getattr(head, "cccid", None)
        pending = self._pending.get(cid)
        if pending is None:
            raise Unreachable(f"nvme/tcp {self.where}: {pdu.type.name} for no command ({cid})")
        if pdu.type is t.PduType.C2H_DATA:  # with a data digest, checked by the decoder
            dest = pending.data_in
            if dest is None or head.offset + head.length > len(dest) or head.length != len(pdu.data):
                raise Unreachable(f"nvme/tcp {self.where}: data outside the command's buffer")
            dest[head.offset : head.offset + head.length] = pdu.data
            if pdu.flags & t.Flag.SUCCESS:
                self._finish(pending, t.Completion(cid))
        elif pdu.type is t.PduType.R2T:
            self._send_data(head, pending.data_out)
        elif pdu.type is t.PduType.CAPSULE_RESP:
            self._finish(pending, head)
        else:
            raise Unreachable(f"nvme/tcp {self.where}: unexpected {pdu.type.name}")

    def _finish(self, pending: Pending, completion: t.Completion | None,
                error: BaseException | None = None) -> None:
        with self._lock:
            del self._pending[pending.cid]
            self._free_cids.append(pending.cid)
        pending.completion, pending.error, pending.done = completion, error, True
        self._slots.release()

    def _break(self, error: BaseException) -> None:
        """The connection is unusable: every command in flight fails with `error`."""
        with self._lock:
            self._broken = self._broken or error
            failed = list(self._pending.values())
        for pending in failed:
            self._finish(pending, None, error)

    def _send_data(self, r2t: t.DataHeader, data: memoryview) -> None:
        end = r2t.offset + r2t.length
        if end > len(data):
            raise Unreachable(f"nvme/tcp {self.where}: R2T for bytes the command does not have")
        offset = r2t.offset
        while offset < end:
            n = min(self.maxh2cdata, end - offset)
            flags = t.Flag.LAST_PDU if offset + n == end else 0
            self._send(t.PduType.H2C_DATA, t.DataHeader(r2t.cccid, r2t.ttag, offset, n),
                       data[offset : offset + n], flags)
            offset += n

    def close(self) -> None:
        self._break(Unreachable(f"nvme/tcp {self.where}: closed"))
        self.sock.close()


def _check(completion: t.Completion, what: str) -> t.Completion:
    if not completion.ok:
        sct, sc = completion.status >> 8 & 0x7, completion.status & 0xFF
        raise NvmeError(f"{what}: status type {sct:#x}, code {sc:#x}")
    return completion


class Io:
    """The commands of one read or write in flight; `result()` waits for them all."""

    __slots__ = ("queue", "verb", "offset", "length", "pending", "copies")

    def __init__(self, queue: Queue, verb: str, offset: int, length: int) -> None:
        self.queue, self.verb, self.offset, self.length = queue, verb, offset, length
        self.pending: list[Pending] = []
        self.copies: list[tuple[memoryview, memoryview]] = []  # (caller's bytes, from a block buffer)

    def result(self) -> int:
        failures = []
        for pending in self.pending:  # wait for all, so that none lands in the buffer later
            try:
                completion = self.queue.wait(pending)
                if not completion.ok:
                    _check(completion, f"{self.verb} of {self.length} bytes at byte {self.offset}")
            except (CrailError, OSError) as exc:
                failures.append(exc)
        self.pending.clear()
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
        fields = struct.pack("<HHHBxI", 0, qid, entries - 1, 0, kato).ljust(24, b"\0")
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
        lbads = raw[128 + 4 * lbaf + 2]
        return Namespace(nsid, blocks, 1 << lbads)

    def read(self, ns: Namespace, lba: int, dest: memoryview) -> None:
        """Read whole blocks from `lba` into `dest`."""
        self.pread(ns, lba * ns.block_size, dest)

    def write(self, ns: Namespace, lba: int, data: memoryview) -> None:
        """Write whole blocks at `lba`."""
        self.pwrite(ns, lba * ns.block_size, data)

    def pread(self, ns: Namespace, offset: int, dest: memoryview) -> None:
        self.start_read(ns, offset, dest).result()

    def pwrite(self, ns: Namespace, offset: int, data: memoryview) -> None:
        self.start_write(ns, offset, data).result()

    def start_read(self, ns: Namespace, offset: int, dest: memoryview) -> "Io":
        """Start reading `len(dest)` bytes at byte `offset`, aligned or not: whole blocks
        land in `dest` directly, a partly covered first or last block comes through a
        block buffer. One command per `max_transfer` bytes, all in flight at once."""
        io = Io(self.io, "read", offset, len(dest))
        for lba, within, piece in self._split(ns, offset, dest):
            if within is None:
                self._submit(io, READ, ns, lba, piece)
            else:
                edge = memoryview(bytearray(ns.block_size))
                self._submit(io, READ, ns, lba, edge)
                io.copies.append((piece, edge[within : within + len(piece)]))
        return io

    def start_write(self, ns: Namespace, offset: int, data: memoryview) -> "Io":
        """Start writing `data` at byte `offset`, aligned or not. Whole blocks go in the
        capsule if they fit, else on the target's R2T; a partly covered block is read,
        patched and written back before this returns, one at a time per controller, so
        that two writes sharing a block do not undo each other (a writer on another
        controller must not share blocks: crailpy's chunks are 4 KiB aligned)."""
        io = Io(self.io, "write", offset, len(data))
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

    def _submit(self, io: "Io", opcode: int, ns: Namespace, lba: int, buf: memoryview) -> None:
        """Submit whole blocks of `buf` at `lba`, in commands of at most `max_transfer` and
        MAX_NLB blocks (nvmet gives a namespace on 9p 1-byte LBAs, so the second can bind)."""
        most = min(self.max_transfer, MAX_NLB * ns.block_size)
        step = max(most // ns.block_size * ns.block_size, ns.block_size)
        for start in range(0, len(buf), step):
            piece = buf[start : start + step]
            cdw10 = struct.pack("<QI", lba + start // ns.block_size,
                                len(piece) // ns.block_size - 1).ljust(24, b"\0")
            command = t.Command(opcode, nsid=ns.nsid, cdw10=cdw10)
            if opcode == READ:
                io.pending.append(self.io.submit(command, data_in=piece))
            else:
                io.pending.append(self.io.submit(command, piece,
                                                 in_capsule=len(piece) <= self.in_capsule))

    @property
    def broken(self) -> bool:
        return self.io.broken or self.admin.broken

    def close(self) -> None:
        self._stopped.set()
        for queue in (self.io, self.admin):
            queue.close()
