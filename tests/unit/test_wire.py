"""The codec alone: every message round-trips, and no input makes the decoder do more than
raise ProtocolError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crailpy.errors import ProtocolError, VersionMismatch
from crailpy.protocol import frames, wire
from crailpy.protocol import messages as m

_RANGES = {"B": (0, 255), "b": (-128, 127), "H": (0, 65535), "I": (0, 2**32 - 1), "Q": (0, 2**64 - 1)}


def strategy_for(cls: type) -> st.SearchStrategy:
    fields = {}
    for name in cls._fields:
        hint = cls.__annotations__[name]
        kind = hint if isinstance(hint, type) else hint.__metadata__[0]
        if isinstance(kind, wire.Fixed):
            fields[name] = st.integers(*_RANGES[kind.code])
        elif isinstance(kind, wire.Text):
            fields[name] = st.text(max_size=40)
        elif isinstance(kind, wire.Blob):
            fields[name] = st.binary(max_size=40)
        elif isinstance(kind, wire.ListOf):
            fields[name] = st.lists(strategy_for(kind.record), max_size=4).map(tuple)
        else:
            fields[name] = strategy_for(kind)
    return st.builds(cls, **fields)


ALL_MESSAGES = sorted({cls for pair in m.OPERATIONS.values() for cls in pair} | {m.Error},
                      key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    assert wire.decode(cls, wire.encode(msg)) == msg


def test_messages_that_carry_data_have_fixed_bodies() -> None:
    for cls in m.CARRIES_DATA:
        assert wire.layout_of(cls).fixed_size is not None


def test_fixed_layouts_come_from_struct() -> None:
    assert frames.HEADER_SIZE == 20
    assert wire.layout_of(m.NodeInfo).fixed_size == struct.calcsize("<QBBbBIQQ") == 32
    assert wire.layout_of(m.Read).fixed_size == 20
    assert wire.layout_of(m.Write).fixed_size == 16
    assert wire.layout_of(m.Block).fixed_size == 16
    assert wire.layout_of(m.Located).fixed_size is None


def test_request_frame_decodes_back() -> None:
    dec = frames.FrameDecoder()
    raw = frames.encode_request(m.Lookup(64, "/a/ü"), 7)
    dec.feed(raw[:5])
    assert dec.next_frame() is None
    dec.feed(raw[5:])
    frame = dec.next_frame()
    assert frame.header.request_id == 7 and frame.header.opcode == m.Op.LOOKUP
    assert frame.message == m.Lookup(64, "/a/ü")
    assert dec.next_frame() is None


def test_write_frame_carries_data_after_fixed_body() -> None:
    dec = frames.FrameDecoder()
    dec.feed(frames.encode_request(m.Write(3, 4096, 7), 1, data_length=5) + b"hello")
    frame = dec.next_frame()
    assert frame.message == m.Write(3, 4096, 7)
    assert bytes(frame.data) == b"hello"


def test_error_reply_decodes_as_error() -> None:
    dec = frames.FrameDecoder()
    dec.feed(frames.encode_error(m.Op.LOOKUP, 9, 4, "no such file"))
    frame = dec.next_frame()
    assert frame.header.is_response and frame.header.status == 4
    assert frame.message == m.Error("no such file")


def test_bad_magic_and_version_and_length_are_refused() -> None:
    good = bytearray(frames.encode_request(m.Ping(), 1))
    with pytest.raises(ProtocolError, match="magic"):
        frames.decode_header(b"\0" * 20)
    bad_version = bytearray(good)
    bad_version[2] = 99
    with pytest.raises(VersionMismatch, match="99"):
        frames.decode_header(bad_version[:20])
    absurd = frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.PING, 0, 0, 1, 2**32 - 1)
    with pytest.raises(ProtocolError, match="over the limit"):
        frames.decode_header(absurd)


def test_list_count_larger_than_the_bytes_is_refused_before_allocating() -> None:
    body = struct.pack("<QI", 0, 2**31)  # Blocks.first, then a huge datanodes count
    with pytest.raises(ProtocolError, match="bad count"):
        wire.decode(m.Blocks, body)


def test_string_length_past_the_end_and_bad_utf8() -> None:
    with pytest.raises(ProtocolError):
        wire.decode(m.Lookup, struct.pack("<IH", 1, 50) + b"/a")
    with pytest.raises(ProtocolError, match="UTF-8"):
        wire.decode(m.Lookup, struct.pack("<IH", 1, 2) + b"\xff\xfe")


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        wire.decode(m.Heartbeat, struct.pack("<IQIIB", 1, 2, 0, 0, 0))


def test_oversized_string_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        wire.encode(m.Lookup(1, "/" + "a" * wire.MAX_STR))


@settings(max_examples=500, deadline=None)
@given(opcode=st.sampled_from(sorted(m.OPERATIONS)), response=st.booleans(),
       body=st.binary(max_size=200))
def test_random_bodies_raise_only_protocol_errors(opcode: int, response: bool, body: bytes) -> None:
    request_cls, response_cls = m.OPERATIONS[opcode]
    try:
        wire.decode(response_cls if response else request_cls, body)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_streams_raise_only_protocol_errors(raw: bytes) -> None:
    dec = frames.FrameDecoder()
    dec.feed(frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.LOOKUP, 0, 0, 1, len(raw)) + raw)
    try:
        dec.next_frame()
    except ProtocolError:
        pass
