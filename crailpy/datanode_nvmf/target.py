"""crailpy's own NVMe/TCP target: one subsystem with one namespace backed by a file or device.

For machines with neither SPDK nor the kernel's nvmet. It speaks what the NVMe
base and fabrics specifications require of a target over TCP, through the
codec of `crailpy.protocol.nvme_tcp`: Fabrics Connect (admin and I/O queues),
Property Get/Set of CAP, VS, CC and CSTS, Identify (controller, namespace,
active namespaces), features, log pages, Keep Alive, and Read, Write and Flush
with data in the capsule or on R2T. A PDU that breaks the transport's rules
gets a termination request and that connection is closed; the others go on.
"""

from __future__ import annotations

import collections
import itertools
import logging
import mmap
import os
import socket
import socketserver
import struct
import threading
from typing import NamedTuple

from crailpy.netio import send_all
from crailpy.protocol import nvme_tcp as t

log = logging.getLogger(__name__)

MAXH2CDATA = 128 << 10  # bytes per H2CData PDU we accept
IN_CAPSULE = 8 << 10  # write data a command capsule may carry
MDTS = 5  # a command moves at most 2^5 pages of 4 KiB: 128 KiB
QUEUE_ENTRIES = 128

# status codes (generic command status unless noted)
INVALID_OPCODE, INVALID_FIELD, LBA_OUT_OF_RANGE = 0x01, 0x02, 0x80
CONNECT_INVALID_PARAMETERS = 0x182  # command-specific status type 1


class Controller:
    """The state an admin queue's Connect creates and its I/O queues join."""

    def __init__(self, cntlid: int) -> None:
        self.cntlid = cntlid
        self.cc = 0

    @property
    def csts(self) -> int:
        ready = self.cc & 1
        shutdown = 2 << 2 if self.cc >> 14 & 3 else 0  # shutdown requested: report it complete
        return ready | shutdown


class Reply(NamedTuple):
    status: int = 0
    result: int = 0
    data: bytes | memoryview = b""  # goes back in C2HData before the response


class Target(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, nqn: str, path: str, size: int,
                 block_size: int = 4096) -> None:
        self.nqn, self.block_size = nqn, block_size
        self.blocks = size // block_size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        # O_DIRECT where the filesystem has it (tmpfs does not): the namespace's bytes then go
        # to the device, not into this host's page cache, as a storage target's should.
        try:
            direct = os.open(path, os.O_RDWR | os.O_DIRECT)
        except OSError:
            self.direct = False
        else:
            os.close(self._fd)
            self._fd, self.direct = direct, True
        self._controllers: dict[int, Controller] = {}
        self._connections: set[_Connection] = set()  # live ones, ended by `stop`
        self._idle = threading.Condition()  # notified as each connection ends
        self._closing = False
        self._cntlids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__((host, port), _Connection)
        self.port = self.server_address[1]

    def start(self) -> "Target":
        log.info("nvme/tcp target %s on port %d: %d blocks of %d bytes%s", self.nqn, self.port,
                 self.blocks, self.block_size, ", O_DIRECT" if self.direct else "")
        threading.Thread(target=self.serve_forever, args=(0.05,), name="nvme-target",
                         daemon=True).start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, end every connection, and close the namespace once no
        connection can touch it: its descriptor may be reused for another file."""
        self.shutdown()
        self.server_close()
        with self._idle:
            self._closing = True
            for connection in self._connections:
                connection.request.shutdown(socket.SHUT_RDWR)
            self._idle.wait_for(lambda: not self._connections, timeout)
        os.close(self._fd)

    def track(self, connection: "_Connection", live: bool) -> None:
        with self._idle:
            if live:
                self._connections.add(connection)
                if self._closing:  # accepted just before `stop`
                    connection.request.shutdown(socket.SHUT_RDWR)
            else:
                self._connections.discard(connection)
                self._idle.notify_all()

    # ---- commands (called by connections) ----

    def connect(self, command: t.Command, data: memoryview) -> tuple[Reply, Controller | None]:
        qid, sqsize = struct.unpack_from("<HH", command.cdw10, 2)
        cntlid = struct.unpack_from("<H", data, 16)[0] if len(data) >= 1024 else None
        subnqn = bytes(data[256:512]).rstrip(b"\0").decode(errors="replace") if cntlid is not None else ""
        if cntlid is None or subnqn != self.nqn or sqsize >= QUEUE_ENTRIES:
            return Reply(CONNECT_INVALID_PARAMETERS), None
        with self._lock:
            if qid == 0:
                controller = Controller(next(self._cntlids))
                self._controllers[controller.cntlid] = controller
            else:
                controller = self._controllers.get(cntlid)
                if controller is None:
                    return Reply(CONNECT_INVALID_PARAMETERS), None
        return Reply(result=controller.cntlid), controller

    def admin(self, controller: Controller, command: t.Command) -> Reply | None:
        """An admin command; None for one that is answered later (Asynchronous Event Request)."""
        opc, cdw = command.opc, struct.unpack("<6I", command.cdw10)
        if opc == 0x7F:
            return self._property(controller, command)
        if opc == 0x06:
            return self._identify(controller, cdw[0] & 0xFF, command.nsid, command.sgl.length)
        if opc == 0x09 and cdw[0] & 0xFF == 0x07:  # Set Features: number of queues
            return Reply(result=7 | 7 << 16)
        if opc in (0x09, 0x0A, 0x18):  # other features, Get Features, Keep Alive
            return Reply()
        if opc == 0x02:  # Get Log Page: nothing to report
            return Reply(data=bytes(min(command.sgl.length, 4096)))
        if opc == 0x0C:  # Asynchronous Event Request: we have no events
            return None
        return Reply(INVALID_OPCODE)

    def _property(self, controller: Controller, command: t.Command) -> Reply:
        fctype = command.nsid & 0xFF
        _, offset, value = struct.unpack_from("<B3xIQ", command.cdw10)
        if fctype == 0x04:  # Property Get
            cap = (QUEUE_ENTRIES - 1) | 1 << 16 | 2 << 24 | 1 << 37  # MQES, CQR, TO 1 s, NVM set
            values = {0x00: cap, 0x08: 0x00010400, 0x14: controller.cc, 0x1C: controller.csts}
            return Reply(result=values[offset]) if offset in values else Reply(INVALID_FIELD)
        if fctype == 0x00 and offset == 0x14:  # Property Set of CC
            controller.cc = value & 0xFFFFFFFF
            return Reply()
        return Reply(INVALID_FIELD)

    def _identify(self, controller: Controller, cns: int, nsid: int, length: int) -> Reply:
        out = bytearray(4096)
        if cns == 0x01:  # the controller
            out[4:24] = b"crailpy".ljust(20)
            out[24:64] = b"crailpy NVMe/TCP target".ljust(40)
            out[64:72] = b"1.0".ljust(8)
            out[77] = MDTS
            struct.pack_into("<HI", out, 78, controller.cntlid, 0x00010400)
            struct.pack_into("<H", out, 320, 10)  # KAS: Keep Alive, in units of 100 ms
            out[512], out[513] = 0x66, 0x44  # SQES, CQES
            struct.pack_into("<HI", out, 514, QUEUE_ENTRIES, 1)  # MAXCMD, NN
            struct.pack_into("<I", out, 536, 1 | 1 << 20)  # SGLS: SGLs, offsets in capsules
            nqn = self.nqn.encode()
            out[768 : 768 + len(nqn)] = nqn
            struct.pack_into("<IIHBB", out, 1792, (IN_CAPSULE + 64) // 16, 1, 0, 0, 1)
        elif cns == 0x00 and nsid == 1:  # the namespace
            struct.pack_into("<QQQ", out, 0, self.blocks, self.blocks, self.blocks)
            out[130] = self.block_size.bit_length() - 1  # LBAF0.LBADS
        elif cns == 0x02:  # active namespaces above nsid
            if nsid < 1:
                struct.pack_into("<I", out, 0, 1)
        elif cns != 0x03:  # 0x03: namespace descriptors, none; anything else is not supported
            return Reply(INVALID_FIELD)
        return Reply(data=bytes(out[: min(length, 4096)]))

    def io(self, command: t.Command, data: memoryview | None) -> Reply:
        """Read (0x02), Write (0x01, with its data) or Flush (0x00) on namespace 1."""
        if command.opc == 0x00:
            os.fsync(self._fd)
            return Reply()
        if command.opc not in (0x01, 0x02):
            return Reply(INVALID_OPCODE)
        if command.nsid != 1:
            return Reply(INVALID_FIELD)
        slba, nlb = struct.unpack_from("<QH", command.cdw10)
        length = (nlb + 1) * self.block_size
        if slba + nlb + 1 > self.blocks:
            return Reply(LBA_OUT_OF_RANGE)
        if length > 4096 << MDTS or command.sgl.length != length:
            return Reply(INVALID_FIELD)
        position = slba * self.block_size
        aligned = mmap.mmap(-1, length)  # page-aligned, as O_DIRECT needs
        if command.opc == 0x02:
            os.preadv(self._fd, [aligned], position)
            return Reply(data=memoryview(aligned))
        aligned[:] = data
        os.pwritev(self._fd, [aligned], position)
        return Reply()


class _Connection(socketserver.BaseRequestHandler):
    """One queue: PDUs in, PDUs out. Commands run in the order they came; capsules that
    arrive while a write waits for its data are kept for after it."""

    server: Target

    def setup(self) -> None:
        self.server.track(self, True)

    def finish(self) -> None:
        self.server.track(self, False)

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = t.PduDecoder(t.PduDecoder.FROM_HOST, max_data=max(MAXH2CDATA, IN_CAPSULE))
        self.controller: Controller | None = None
        self.qid = -1
        self.sq_flow = True  # off at the host's asking: reads then end with C2HData's SUCCESS
        self.backlog: collections.deque[t.Pdu] = collections.deque()
        try:
            if self._expect(t.PduType.IC_REQ) is None:
                return
            self._send(t.PduType.IC_RESP, t.ICResp(maxh2cdata=MAXH2CDATA))
            while True:
                pdu = self.backlog.popleft() if self.backlog else self._next()
                if pdu is None:
                    return
                if pdu.type is not t.PduType.CAPSULE_CMD:
                    raise t.TransportError(t.Fes.PDU_SEQUENCE_ERROR, 0,
                                           f"{pdu.type.name} where a command was due", pdu.header)
                self._command(pdu.body, pdu.data)
        except t.TransportError as exc:
            log.warning("nvme/tcp %s: %s; ending the connection", self.client_address, exc)
            self._send(t.PduType.C2H_TERM_REQ, t.TermReq(exc.fes, exc.fei, exc.header[:128]))
        except (OSError, t.DataDigestError) as exc:
            log.info("nvme/tcp %s: %s", self.client_address, exc)

    def _next(self) -> t.Pdu | None:
        while True:
            pdu = self.decoder.next_pdu()
            if pdu is not None:
                if pdu.type is t.PduType.H2C_TERM_REQ:
                    return None
                return pdu
            chunk = self.request.recv(256 << 10)
            if not chunk:
                return None
            self.decoder.feed(chunk)

    def _expect(self, ptype: t.PduType) -> t.Pdu | None:
        pdu = self._next()
        if pdu is not None and pdu.type is not ptype:
            raise t.TransportError(t.Fes.PDU_SEQUENCE_ERROR, 0, f"{pdu.type.name} where "
                                   f"{ptype.name} was due", pdu.header)
        return pdu

    def _send(self, ptype: t.PduType, body: object, data: bytes | memoryview = b"",
              flags: int = 0) -> None:
        send_all(self.request, t.encode(ptype, body, data, flags))

    def _command(self, command: t.Command, data: memoryview) -> None:
        server = self.server
        if self.controller is None:  # the first command of a queue must be Connect
            if command.opc != 0x7F or command.nsid & 0xFF != 0x01:
                return self._reply(command, Reply(INVALID_OPCODE))
            reply, self.controller = server.connect(command, data)
            self.qid = struct.unpack_from("<H", command.cdw10, 2)[0]
            self.sq_flow = not command.cdw10[6] & t.DISABLE_SQ_FLOW
            return self._reply(command, reply)
        if self.qid == 0:
            reply = server.admin(self.controller, command)
            if reply is not None:
                self._reply(command, reply)
            return None
        if command.opc == 0x01 and command.sgl.kind != t.Sgl.IN_CAPSULE:
            data = self._receive_data(command)
        return self._reply(command, server.io(command, data))

    def _receive_data(self, command: t.Command) -> memoryview:
        """Ask for a write's data with one R2T and gather the H2CData that answer it."""
        length = command.sgl.length
        if length > 4096 << MDTS:
            raise t.TransportError(t.Fes.DATA_LIMIT_EXCEEDED, 0, f"a write of {length} bytes")
        buffer = bytearray(length)
        self._send(t.PduType.R2T, t.DataHeader(command.cid, command.cid, 0, length))
        received = 0
        while received < length:
            pdu = self._next()
            if pdu is None:
                raise OSError("the host left during a write")
            if pdu.type is t.PduType.CAPSULE_CMD and len(self.backlog) < QUEUE_ENTRIES:
                self.backlog.append(pdu)
                continue
            if pdu.type is not t.PduType.H2C_DATA:
                raise t.TransportError(t.Fes.PDU_SEQUENCE_ERROR, 0,
                                       f"{pdu.type.name} where H2C_DATA was due", pdu.header)
            head = pdu.body
            if head.cccid != command.cid or head.offset != received or \
                    head.length != len(pdu.data) or received + head.length > length:
                raise t.TransportError(t.Fes.DATA_OUT_OF_RANGE, 12, "H2CData outside the R2T",
                                       pdu.header)
            buffer[received : received + head.length] = pdu.data
            received += head.length
        return memoryview(buffer)

    def _reply(self, command: t.Command, reply: Reply) -> None:
        if reply.data:
            success = not self.sq_flow and reply.status == 0 and reply.result == 0
            self._send(t.PduType.C2H_DATA, t.DataHeader(command.cid, 0, 0, len(reply.data)),
                       reply.data, t.Flag.LAST_PDU | (t.Flag.SUCCESS if success else 0))
            if success:
                return
        self._send(t.PduType.CAPSULE_RESP, t.Completion(command.cid, reply.status, reply.result,
                                                         sqid=max(self.qid, 0)))
