"""Frames: the fixed header in front of every message, and a sans-I/O decoder.

A frame is a 20-byte header, the message body, and (for WRITE requests and
READ responses) raw data bytes. Servers and clients that read from sockets use
`decode_header` and `body_length` to read exactly one frame at a time, so that
data can land straight in its destination buffer; `FrameDecoder` is the
feed/next interface over the same functions for callers that have bytes in
hand (tests, the fuzzer).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from crailpy.errors import ProtocolError, Status, VersionMismatch
from crailpy.protocol import wire
from crailpy.protocol.messages import CARRIES_DATA, OPCODES, OPERATIONS, VERSION, Error

MAGIC = 0xCA11
RESPONSE = 0x1  # header flag: this frame answers the request with the same id

HEADER = struct.Struct("<HBBHHQI")
HEADER_SIZE = HEADER.size

MAX_BODY = 1 << 20  # bytes of a message body, data excluded
MAX_DATA = 64 << 20  # bytes of data in one READ or WRITE frame


_new = tuple.__new__  # a named tuple from a tuple, without its __new__'s Python frame


class Header(NamedTuple):
    version: int
    opcode: int
    flags: int
    status: int
    request_id: int
    length: int  # bytes after the header: body and data

    @property
    def is_response(self) -> bool:
        return bool(self.flags & RESPONSE)


def decode_header(raw: bytes | bytearray | memoryview) -> Header:
    """Parse and check a header; raise before anything is allocated for a bad one."""
    magic, version, _, _, _, _, length = fields = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic 0x{magic:04x}")
    if version != VERSION:
        raise VersionMismatch(f"peer speaks protocol version {version}; this side speaks {VERSION}")
    if length > MAX_BODY + MAX_DATA:
        raise ProtocolError(f"frame length {length} is over the limit")
    return _new(Header, fields[1:])


REQUESTS = {opcode: pair[0] for opcode, pair in OPERATIONS.items()}  # a server's lookup


def message_class(header: Header) -> type | None:
    """The class of the body that follows `header`, or None for an unknown opcode."""
    pair = OPERATIONS.get(header.opcode)
    if pair is None:
        return None
    if header.is_response and header.status != Status.OK:
        return Error
    return pair[1] if header.is_response else pair[0]


def body_length(header: Header, cls: type) -> int:
    """How many bytes of the frame are the body; the rest is data."""
    if cls in CARRIES_DATA:
        size = wire.layout_of(cls).fixed_size
        if header.length < size:
            raise ProtocolError(f"{cls.__name__} frame is shorter than its body")
        if header.length - size > MAX_DATA:
            raise ProtocolError(f"{cls.__name__} carries more than {MAX_DATA} bytes")
        return size
    if header.length > MAX_BODY:
        raise ProtocolError(f"{cls.__name__} body of {header.length} bytes is over the limit")
    return header.length


def encode_request(msg: Any, request_id: int, data_length: int = 0) -> bytes:
    """Header and body of a request; `data_length` bytes of data must follow."""
    body = wire.encode(msg)
    return HEADER.pack(MAGIC, VERSION, OPCODES[type(msg)], 0, 0, request_id,
                       len(body) + data_length) + body


def encode_response(opcode: int, request_id: int, msg: Any, data_length: int = 0) -> bytes:
    """Header and body of a successful response."""
    body = wire.encode(msg)
    return HEADER.pack(MAGIC, VERSION, opcode, RESPONSE, Status.OK, request_id,
                       len(body) + data_length) + body


def encode_error(opcode: int, request_id: int, status: int, message: str) -> bytes:
    """A response that reports an error; its body is an `Error`."""
    body = wire.encode(Error(message[:1000]))
    return HEADER.pack(MAGIC, VERSION, opcode, RESPONSE, status, request_id, len(body)) + body


class Frame(NamedTuple):
    header: Header
    message: Any  # None for an unknown opcode
    data: memoryview


class FrameDecoder:
    """Bytes in (`feed`), frames out (`next_frame`), with no I/O (h11's way).

    `next_frame` returns None until a whole frame is buffered. A frame with an
    unknown opcode comes out with `message` None so that the caller can answer
    it; a malformed body raises `ProtocolError` after the frame is consumed, so
    the stream stays in step. A bad header raises and leaves the stream broken.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def next_frame(self) -> Frame | None:
        if len(self._buf) < HEADER_SIZE:
            return None
        header = decode_header(self._buf[:HEADER_SIZE])
        cls = message_class(header)
        if cls is not None:
            size = body_length(header, cls)
        if len(self._buf) < HEADER_SIZE + header.length:
            return None
        frame = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + header.length])
        del self._buf[: HEADER_SIZE + header.length]
        if cls is None:
            return Frame(header, None, memoryview(b""))
        view = memoryview(frame)
        return Frame(header, wire.decode(cls, view[:size]), view[size:])
