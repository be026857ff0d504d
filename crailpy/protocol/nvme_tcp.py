"""NVMe/TCP PDUs and NVMe commands: bytes in, typed values out, no I/O.

The flash tier speaks NVMe over TCP (NVMe-oF TCP transport, the NVMe base and
fabrics specifications): the built-in target and the client's initiator share
this codec, as the namenode and its clients share `frames`. Every PDU starts
with an 8-byte common header (type, flags, header length, data offset, PDU
length); the rest of the header depends on the type; data, if any, starts at
the data offset; CRC32C digests may follow the header and the data.

`PduDecoder` is fed bytes from a socket and gives whole PDUs; a PDU that
breaks the rules raises `TransportError` with the fatal error status a
termination request must carry.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

import crc32c as _crc32c

COMMON = struct.Struct("<BBBBI")  # type, flags, hlen, pdo, plen
PORT = 4420
PFV = 0  # PDU format version
MAX_PDU = (16 << 20) + 1024  # refuse larger PDUs before buffering them


class PduType(enum.IntEnum):
    IC_REQ = 0x00
    IC_RESP = 0x01
    H2C_TERM_REQ = 0x02
    C2H_TERM_REQ = 0x03
    CAPSULE_CMD = 0x04
    CAPSULE_RESP = 0x05
    H2C_DATA = 0x06
    C2H_DATA = 0x07
    R2T = 0x09


_TYPES: dict[int, PduType] = {int(kind): kind for kind in PduType}  # faster than PduType(n)


class Flag:
    """Bits of a PDU's flags. Plain ints: every PDU's are tested, and IntFlag arithmetic
    cost more than the rest of a header check (a profile of 128 KiB reads in the VM)."""

    HDGST = 0x01  # a header digest follows the header
    DDGST = 0x02  # a data digest follows the data
    LAST_PDU = 0x04  # H2CData/C2HData: the last PDU of the transfer
    SUCCESS = 0x08  # C2HData: the command succeeded; no CapsuleResp follows


class Fes(enum.IntEnum):
    """Fatal error status of a termination request."""

    INVALID_HEADER_FIELD = 0x01
    PDU_SEQUENCE_ERROR = 0x02
    HEADER_DIGEST_ERROR = 0x03
    DATA_OUT_OF_RANGE = 0x04
    DATA_LIMIT_EXCEEDED = 0x05
    UNSUPPORTED_PARAMETER = 0x06


class DataDigestError(Exception):
    """A data digest did not match: the command fails, the connection stays."""


class TransportError(Exception):
    """A PDU breaks the transport's rules: the connection ends with a termination request."""

    def __init__(self, fes: Fes, fei: int, message: str, header: bytes = b"") -> None:
        super().__init__(message)
        self.fes, self.fei, self.header = fes, fei, header


def crc32c(data: bytes | memoryview) -> int:
    return _crc32c.crc32c(data)


# ---- PDU headers (what follows the common header) ----

class ICReq(NamedTuple):
    pfv: int = PFV
    hpda: int = 0  # host PDU data alignment, in dwords minus one
    digests: int = 0  # bit 0: header digest, bit 1: data digest
    maxr2t: int = 0  # outstanding R2Ts per command, 0's based


class ICResp(NamedTuple):
    pfv: int = PFV
    cpda: int = 0
    digests: int = 0
    maxh2cdata: int = 128 << 10  # most bytes in one H2CData PDU


class TermReq(NamedTuple):
    fes: int
    fei: int  # the offset of the offending field, or other information
    header: bytes  # the offending PDU's header, as received


class DataHeader(NamedTuple):
    """H2CData, C2HData and R2T."""

    cccid: int  # the command's id
    ttag: int  # transfer tag (R2T, H2CData); 0 for C2HData
    offset: int  # of this data in the command's whole transfer
    length: int


_IC = struct.Struct("<HBBI")  # at 8: pfv, hpda/cpda, dgst, maxr2t/maxh2cdata
_TERM = struct.Struct("<HI")  # at 8: fes, fei
_DATA = struct.Struct("<HHII")  # at 8: cccid, ttag, offset, length
HLEN = {PduType.IC_REQ: 128, PduType.IC_RESP: 128, PduType.H2C_TERM_REQ: 24,
        PduType.C2H_TERM_REQ: 24, PduType.CAPSULE_CMD: 72, PduType.CAPSULE_RESP: 24,
        PduType.H2C_DATA: 24, PduType.C2H_DATA: 24, PduType.R2T: 24}
CARRIES_DATA = {PduType.H2C_TERM_REQ, PduType.C2H_TERM_REQ, PduType.CAPSULE_CMD,
                PduType.H2C_DATA, PduType.C2H_DATA}


class Pdu(NamedTuple):
    type: PduType
    flags: int
    header: bytes  # the whole header, common part included, without its digest
    body: object  # ICReq, ICResp, TermReq, Command, Completion or DataHeader
    data: memoryview  # empty for PDUs without data


# ---- NVMe submission and completion queue entries ----

class Sgl(NamedTuple):
    """An SGL descriptor (16 bytes). NVMe/TCP uses two kinds."""

    address: int = 0
    length: int = 0
    kind: int = 0x5A  # byte 15: type << 4 | subtype

    IN_CAPSULE = 0x01  # data block, offset: the data follows the command in the capsule
    TRANSPORT = 0x5A  # transport data block: data moves in Data PDUs


_SQE = struct.Struct("<BBHIIIQQI3xB24s")  # opc flags cid nsid cdw2 cdw3 mptr sgl(addr len type) cdw10-15
_CQE = struct.Struct("<QHHHH")
PSDT_SGL = 0x40  # SQE flags: the data pointer is an SGL
DISABLE_SQ_FLOW = 0x04  # Fabrics Connect's attributes: the host needs no SQ head pointer, so
                        # a read may end with C2HData's SUCCESS flag and no response capsule


class Command(NamedTuple):
    """A 64-byte submission queue entry. `cdw10` holds command dwords 10-15 as 24 raw bytes."""

    opc: int
    cid: int = 0
    nsid: int = 0
    sgl: Sgl = Sgl()
    cdw10: bytes = bytes(24)
    flags: int = PSDT_SGL
    cdw2: int = 0
    cdw3: int = 0
    mptr: int = 0

    def encode(self) -> bytes:
        return _SQE.pack(self.opc, self.flags, self.cid, self.nsid, self.cdw2, self.cdw3, self.mptr,
                         self.sgl.address, self.sgl.length, self.sgl.kind, self.cdw10)

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> "Command":
        opc, flags, cid, nsid, cdw2, cdw3, mptr, address, length, kind, rest = _SQE.unpack(raw)
        return cls(opc, cid, nsid, Sgl(address, length, kind), rest, flags, cdw2, cdw3, mptr)


_RW = struct.Struct("<BBHI32xQI12x")  # opc flags cid nsid, (cdw2-3 mptr sgl), slba, blocks - 1


def read_write(opc: int, nsid: int, slba: int, blocks: int) -> bytes:
    """The entry of a Read or Write of `blocks` blocks from `slba`, with id and SGL zero:
    `Command(...).encode()` in one step, for the initiator's hot path."""
    return _RW.pack(opc, PSDT_SGL, 0, nsid, slba, blocks - 1)


class Completion(NamedTuple):
    """A 16-byte completion queue entry."""

    cid: int
    status: int = 0  # (sct << 8 | sc); the phase bit is not used over fabrics
    result: int = 0
    sqhd: int = 0
    sqid: int = 0

    def encode(self) -> bytes:
        return _CQE.pack(self.result, self.sqhd, self.sqid, self.cid, self.status << 1)

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> "Completion":
        result, sqhd, sqid, cid, status = _CQE.unpack(raw)
        return cls(cid, (status >> 1) & 0x7FFF, result, sqhd, sqid)

    @property
    def ok(self) -> bool:
        return self.status & 0x7FF == 0


# ---- encoding PDUs ----

TERMINATIONS = (PduType.H2C_TERM_REQ, PduType.C2H_TERM_REQ)
NO_DIGESTS = (PduType.IC_REQ, PduType.IC_RESP, *TERMINATIONS)  # never carry digests


def encode(ptype: PduType, body: object, data: bytes | memoryview = b"", flags: int = 0,
           digests: int = 0, cpda: int = 0) -> list[bytes | memoryview]:
    """The buffers of one PDU, ready for `sendmsg`. `digests` as negotiated (bit 0 header,
    bit 1 data), `cpda` the data alignment asked for; data is not copied."""
    hlen = HLEN[ptype]
    if ptype in (PduType.IC_REQ, PduType.IC_RESP):
        specific = _IC.pack(*body)
    elif ptype in TERMINATIONS:
        specific, data = _TERM.pack(body.fes, body.fei), body.header
    elif ptype in (PduType.CAPSULE_CMD, PduType.CAPSULE_RESP):
        specific = body.encode()
    else:
        specific = _DATA.pack(*body)
    hdgst = ptype not in NO_DIGESTS and bool(digests & 1)
    ddgst = ptype not in NO_DIGESTS and bool(digests & 2) and len(data) > 0
    flags |= (Flag.HDGST if hdgst else 0) | (Flag.DDGST if ddgst else 0)
    head_end = hlen + (4 if hdgst else 0)
    pdo = 0
    if len(data) and ptype not in TERMINATIONS:
        align = (cpda + 1) * 4
        pdo = -(-head_end // align) * align
    plen = max(pdo, head_end) + len(data) + (4 if ddgst else 0)
    header = COMMON.pack(ptype, flags, hlen, pdo, plen) + specific
    header += bytes(hlen - len(header))
    out: list[bytes | memoryview] = [header]
    if hdgst:
        out.append(struct.pack("<I", crc32c(header)))
    if len(data):
        if pdo > head_end:
            out.append(bytes(pdo - head_end))
        out.append(data)
        if ddgst:
            out.append(struct.pack("<I", crc32c(data)))
    return out


# ---- decoding PDUs ----

class PduDecoder:
    """Feed bytes with `feed`; take whole PDUs with `next_pdu` (None until one is complete).

    `expect` is the side this decoder parses: PDUs a host may send, or those a
    controller may send; a PDU of the other direction is a transport error.
    `max_data` bounds the data a PDU may carry.
    """

    FROM_HOST = frozenset({PduType.IC_REQ, PduType.H2C_TERM_REQ, PduType.CAPSULE_CMD,
                           PduType.H2C_DATA})
    FROM_CONTROLLER = frozenset({PduType.IC_RESP, PduType.C2H_TERM_REQ, PduType.CAPSULE_RESP,
                                 PduType.C2H_DATA, PduType.R2T})

    def __init__(self, expect: frozenset, max_data: int = 1 << 20) -> None:
        self._expect = expect
        self._max_data = max_data
        self._buffer = bytearray()
        self.digests = 0  # as negotiated by ICReq/ICResp: bit 0 header, bit 1 data digests

    def feed(self, data: bytes | memoryview) -> None:
        self._buffer += data

    def next_pdu(self) -> Pdu | None:
        if len(self._buffer) < COMMON.size:
            return None
        ptype, flags, hlen, pdo, plen = COMMON.unpack_from(self._buffer)
        self.check_header(ptype, flags, hlen, pdo, plen)
        if len(self._buffer) < plen:
            return None
        raw = bytes(self._buffer[:plen])
        del self._buffer[:plen]
        return self._parse(raw, _TYPES[ptype], flags, hlen, pdo, plen)

    def _fail(self, fes: Fes, fei: int, message: str) -> TransportError:
        return TransportError(fes, fei, message, bytes(self._buffer[:128]))

    def check_header(self, ptype: int, flags: int, hlen: int, pdo: int, plen: int) -> None:
        """Raise `TransportError` if a common header breaks the rules; a reader that takes
        data straight off the socket checks each header with this first."""
        kind = _TYPES.get(ptype)
        if kind is None or kind not in self._expect:
            raise self._fail(Fes.INVALID_HEADER_FIELD, 0, f"unexpected PDU type {ptype:#x}")
        ptype = kind
        if hlen != HLEN[ptype]:
            raise self._fail(Fes.INVALID_HEADER_FIELD, 2, f"{ptype.name}: header length {hlen}, "
                                                          f"not {HLEN[ptype]}")
        wanted = 0 if ptype in NO_DIGESTS else self.digests
        if bool(wanted & 1) != bool(flags & Flag.HDGST):
            raise self._fail(Fes.INVALID_HEADER_FIELD, 1, f"{ptype.name}: header digest flag "
                                                          f"against what was negotiated")
        head_end = hlen + (4 if flags & Flag.HDGST else 0)
        if plen < head_end or plen > MAX_PDU:
            raise self._fail(Fes.INVALID_HEADER_FIELD, 4, f"{ptype.name}: PDU length {plen}")
        if ptype in CARRIES_DATA and plen > head_end:
            if ptype not in TERMINATIONS and (pdo < head_end or pdo > plen):
                raise self._fail(Fes.INVALID_HEADER_FIELD, 3, f"{ptype.name}: data offset {pdo}")
            if plen - max(pdo, head_end) > self._max_data + 4:
                raise self._fail(Fes.DATA_LIMIT_EXCEEDED, 4,
                                 f"{ptype.name}: {plen - pdo} bytes of data")
        elif plen != head_end:
            raise self._fail(Fes.INVALID_HEADER_FIELD, 4, f"{ptype.name} carries no data, "
                                                          f"but its length is {plen}")

    def _parse(self, raw: bytes, ptype: PduType, flags: int, hlen: int, pdo: int, plen: int) -> Pdu:
        header = raw[:hlen]
        pos = hlen
        if flags & Flag.HDGST:
            (digest,) = struct.unpack_from("<I", raw, pos)
            if digest != crc32c(header):
                raise TransportError(Fes.HEADER_DIGEST_ERROR, 0, f"{ptype.name}: bad header digest",
                                     header)
            pos += 4
        data_end = plen - (4 if flags & Flag.DDGST else 0)
        start = pos if ptype in TERMINATIONS or not pdo else pdo
        data = memoryview(raw)[start:data_end] if data_end > start else memoryview(b"")
        if flags & Flag.DDGST and len(data):
            (digest,) = struct.unpack_from("<I", raw, data_end)
            if digest != crc32c(data):
                raise DataDigestError(f"{ptype.name}: bad data digest")
        specific = memoryview(header)[COMMON.size:]
        if ptype in (PduType.IC_REQ, PduType.IC_RESP):
            fields = _IC.unpack_from(specific)
            body: object = ICReq(*fields) if ptype is PduType.IC_REQ else ICResp(*fields)
        elif ptype in TERMINATIONS:
            fes, fei = _TERM.unpack_from(specific)
            body = TermReq(fes, fei, bytes(data))
        elif ptype is PduType.CAPSULE_CMD:
            body = Command.decode(specific[:64])
        elif ptype is PduType.CAPSULE_RESP:
            body = Completion.decode(specific[:16])
        else:
            body = DataHeader(*_DATA.unpack_from(specific))
        return Pdu(ptype, flags, header, body, data)
