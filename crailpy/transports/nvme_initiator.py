"""A userspace NVMe/TCP initiator: one controller, an admin queue and I/O queues over TCP.

It speaks to any NVMe-oF TCP target (Linux nvmet, SPDK, crailpy's own) with
the codec of `crailpy.protocol.nvme_tcp`: ICReq/ICResp, Fabrics Connect,
Property Get/Set to enable the controller, Identify, then Read and Write
with data in C2HData PDUs and, for writes, R2T and H2CData. Data moves
between the socket and the caller's buffer without copies in Python.

This first version runs one command at a time per queue.
"""

from __future__ import annotations

import socket
import struct
import time
import uuid
from typing import NamedTuple

from crailpy.errors import CrailError, Unreachable
from crailpy.netio import send_all
from crailpy.protocol import nvme_tcp as t

ADMIN_SQSIZE = 31  # 0's based
IO_SQSIZE = 127
KATO_MS = 0  # no keep-alive timeout yet: this initiator does not send Keep Alive

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


class Queue:
    """One NVMe/TCP connection: a submission and completion queue pair."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"nvme/tcp {host}:{port}: {exc.strerror or exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.where = f"{host}:{port}"
        self._decoder = t.PduDecoder(t.PduDecoder.FROM_CONTROLLER, max_data=16 << 20)
        self._cid = 0
        self._send(t.PduType.IC_REQ, t.ICReq())
        resp = self._receive().body
        if not isinstance(resp, t.ICResp) or resp.pfv != t.PFV or resp.digests:
            raise Unreachable(f"nvme/tcp {self.where}: unexpected connection answer {resp}")
        self.maxh2cdata = resp.maxh2cdata
        self._cpda = resp.cpda

    def _send(self, ptype: t.PduType, body: object, data: bytes | memoryview = b"",
              flags: int = 0) -> None:
        send_all(self.sock, t.encode(ptype, body, data, flags))

    def _receive(self) -> t.Pdu:
        while True:
            pdu = self._decoder.next_pdu()
            if pdu is not None:
                if pdu.type is t.PduType.C2H_TERM_REQ:
                    raise Unreachable(f"nvme/tcp {self.where}: the target ended the connection "
                                      f"(fatal error status {pdu.body.fes:#x})")
                return pdu
            chunk = self.sock.recv(256 << 10)
            if not chunk:
                raise Unreachable(f"nvme/tcp {self.where}: connection closed")
            self._decoder.feed(chunk)

    def execute(self, command: t.Command, data_out: bytes | memoryview = b"",
                data_in: memoryview | None = None, in_capsule: bool = False) -> t.Completion:
        """Run one command to its completion. `data_out` goes in the capsule or on R2T;
        C2HData lands in `data_in`."""
        self._cid = (self._cid + 1) & 0xFFFF
        command = command._replace(cid=self._cid)
        if in_capsule:
            command = command._replace(sgl=t.Sgl(0, len(data_out), t.Sgl.IN_CAPSULE))
            self._send(t.PduType.CAPSULE_CMD, command, data_out)
        else:
            length = len(data_in) if data_in is not None else len(data_out)
            command = command._replace(sgl=t.Sgl(0, length, t.Sgl.TRANSPORT))
            self._send(t.PduType.CAPSULE_CMD, command)
        while True:
            pdu = self._receive()
            if pdu.type is t.PduType.C2H_DATA:
                head = pdu.body
                if data_in is None or head.cccid != self._cid or \
                        head.offset + head.length > len(data_in) or head.length != len(pdu.data):
                    raise Unreachable(f"nvme/tcp {self.where}: data outside the command's buffer")
                data_in[head.offset : head.offset + head.length] = pdu.data
                if pdu.flags & t.Flag.SUCCESS:
                    return t.Completion(self._cid)
            elif pdu.type is t.PduType.R2T:
                self._send_data(pdu.body, data_out)
            elif pdu.type is t.PduType.CAPSULE_RESP:
                return pdu.body
            else:
                raise Unreachable(f"nvme/tcp {self.where}: unexpected {pdu.type.name}")

    def _send_data(self, r2t: t.DataHeader, data: bytes | memoryview) -> None:
        view = memoryview(data)
        end = r2t.offset + r2t.length
        if end > len(view):
            raise Unreachable(f"nvme/tcp {self.where}: R2T for bytes the command does not have")
        offset = r2t.offset
        while offset < end:
            n = min(self.maxh2cdata, end - offset)
            flags = t.Flag.LAST_PDU if offset + n == end else 0
            self._send(t.PduType.H2C_DATA, t.DataHeader(r2t.cccid, r2t.ttag, offset, n),
                       view[offset : offset + n], flags)
            offset += n

    def close(self) -> None:
        self.sock.close()


def _check(completion: t.Completion, what: str) -> t.Completion:
    if not completion.ok:
        sct, sc = completion.status >> 8 & 0x7, completion.status & 0xFF
        raise NvmeError(f"{what}: status type {sct:#x}, code {sc:#x}")
    return completion


class Controller:
    """An NVMe controller of a subsystem (by NQN) at host:port, with one I/O queue."""

    def __init__(self, host: str, port: int, subnqn: str, timeout: float = 10.0,
                 hostnqn: str | None = None) -> None:
        self.host, self.port, self.subnqn, self.timeout = host, port, subnqn, timeout
        self.hostid = uuid.uuid4().bytes
        self.hostnqn = hostnqn or f"nqn.2014-08.org.nvmexpress:uuid:{uuid.UUID(bytes=self.hostid)}"
        self.admin = Queue(host, port, timeout)
        self.cntlid = self._connect(self.admin, 0, ADMIN_SQSIZE, 0xFFFF)
        self._enable()
        # Writes up to this size travel in the command capsule (IOCCSZ, in 16-byte units, counts
        # the 64-byte command). Linux nvmet waits for such writes' data in the capsule.
        self.in_capsule = max(struct.unpack_from("<I", self.identify(1), 1792)[0] * 16 - 64, 0)
        self.io = Queue(host, port, timeout)
        self._connect(self.io, 1, IO_SQSIZE, self.cntlid)

    def _connect(self, queue: Queue, qid: int, sqsize: int, cntlid: int) -> int:
        fields = struct.pack("<HHHBxI", 0, qid, sqsize, 0, KATO_MS if qid == 0 else 0).ljust(24, b"\0")
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

    def _enable(self) -> None:
        cap = self.get_property(CAP, True)
        timeout = max((cap >> 24 & 0xFF) * 0.5, self.timeout)  # CAP.TO is in 500 ms units
        self.set_property(CC, 1 | 6 << 16 | 4 << 20)  # EN, IOSQES 64 bytes, IOCQES 16 bytes
        deadline = time.monotonic() + timeout
        while not self.get_property(CSTS, False) & 1:
            if time.monotonic() > deadline:
                raise Unreachable(f"nvme/tcp {self.host}:{self.port}: the controller never got ready")
            time.sleep(0.01)

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
        """Read whole blocks from `lba` into `dest` (a multiple of the block size)."""
        self._io(READ, ns, lba, len(dest), data_in=dest)

    def write(self, ns: Namespace, lba: int, data: memoryview) -> None:
        """Write whole blocks at `lba`: in the capsule if they fit, else on the target's R2T."""
        self._io(WRITE, ns, lba, len(data), data_out=data, in_capsule=len(data) <= self.in_capsule)

    def _io(self, opcode: int, ns: Namespace, lba: int, length: int, **data: object) -> None:
        if length % ns.block_size or length == 0:
            raise ValueError(f"{length} bytes is not a whole number of {ns.block_size}-byte blocks")
        cdw10 = struct.pack("<QI", lba, length // ns.block_size - 1).ljust(24, b"\0")
        what = f"{'read' if opcode == READ else 'write'} of {length} bytes at block {lba}"
        _check(self.io.execute(t.Command(opcode, nsid=ns.nsid, cdw10=cdw10), **data), what)

    def close(self) -> None:
        for queue in (self.io, self.admin):
            queue.close()
