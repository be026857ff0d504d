"""The NVMe/TCP codec: PDUs round-trip, bad PDUs give the termination status the spec names."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crailpy.protocol import nvme_tcp as t

HOST, CONTROLLER = t.PduDecoder.FROM_HOST, t.PduDecoder.FROM_CONTROLLER


def wire(*args, **kwargs) -> bytes:
    return b"".join(bytes(b) for b in t.encode(*args, **kwargs))


def decode_all(raw: bytes, expect, digests: int = 0) -> list[t.Pdu]:
    decoder = t.PduDecoder(expect)
    decoder.digests = digests
    out = []
    for byte in raw:  # one byte at a time: PDUs come whole only when their last byte is in
        decoder.feed(bytes([byte]))
        pdu = decoder.next_pdu()
        if pdu is not None:
            out.append(pdu)
    return out


def test_icreq_is_128_bytes_with_the_spec_layout() -> None:
    raw = wire(t.PduType.IC_REQ, t.ICReq(0, 0, 3, 15))
    assert len(raw) == 128
    assert raw[:8] == bytes([0x00, 0x00, 128, 0]) + struct.pack("<I", 128)
    assert raw[8:16] == struct.pack("<HBBI", 0, 0, 3, 15)
    [pdu] = decode_all(raw, HOST)
    assert pdu.body == t.ICReq(0, 0, 3, 15)


def test_command_capsule_with_in_capsule_data_round_trips() -> None:
    command = t.Command(0x01, cid=7, nsid=1, sgl=t.Sgl(0, 4, t.Sgl.IN_CAPSULE),
                        cdw10=struct.pack("<QH", 2048, 0).ljust(24, b"\0"))
    raw = wire(t.PduType.CAPSULE_CMD, command, b"data", cpda=0)
    assert raw[2] == 72 and raw[3] == 72 and len(raw) == 76  # hlen, pdo, plen
    [pdu] = decode_all(raw, HOST)
    assert pdu.body == command and bytes(pdu.data) == b"data"


def test_digests_and_alignment() -> None:
    data = bytes(range(200))
    raw = wire(t.PduType.C2H_DATA, t.DataHeader(7, 0, 0, len(data)), data, digests=3, cpda=7,
               flags=t.Flag.LAST_PDU | t.Flag.SUCCESS)
    flags, hlen, pdo, plen = raw[1], raw[2], raw[3], struct.unpack_from("<I", raw, 4)[0]
    assert flags == t.Flag.HDGST | t.Flag.DDGST | t.Flag.LAST_PDU | t.Flag.SUCCESS
    assert (hlen, pdo, plen) == (24, 32, 32 + 200 + 4)  # header 24 + digest 4, data at 32 bytes
    [pdu] = decode_all(raw, CONTROLLER, digests=3)
    assert bytes(pdu.data) == data and pdu.body == t.DataHeader(7, 0, 0, 200)

    bad_header = bytearray(raw)
    bad_header[24] ^= 1
    with pytest.raises(t.TransportError) as exc:
        decode_all(bytes(bad_header), CONTROLLER, digests=3)
    assert exc.value.fes == t.Fes.HEADER_DIGEST_ERROR
    bad_data = bytearray(raw)
    bad_data[40] ^= 1
    with pytest.raises(t.DataDigestError):
        decode_all(bytes(bad_data), CONTROLLER, digests=3)


def test_completion_status_and_the_termination_request() -> None:
    done = t.Completion(cid=9, status=0x0002 | (1 << 8), result=0xABCD)
    [pdu] = decode_all(wire(t.PduType.CAPSULE_RESP, done), CONTROLLER)
    assert pdu.body == done and not pdu.body.ok
    term = t.TermReq(t.Fes.INVALID_HEADER_FIELD, 2, bytes(range(24)))
    [pdu] = decode_all(wire(t.PduType.C2H_TERM_REQ, term), CONTROLLER)
    assert pdu.body == term


@pytest.mark.parametrize("raw, fes", [
    (wire(t.PduType.IC_RESP, t.ICResp()), t.Fes.INVALID_HEADER_FIELD),  # the other direction's PDU
    (bytes([0x04, 0, 70, 0]) + struct.pack("<I", 72) + bytes(64), t.Fes.INVALID_HEADER_FIELD),  # hlen
    (bytes([0x04, 0, 72, 72]) + struct.pack("<I", 1 << 30), t.Fes.INVALID_HEADER_FIELD),  # plen
    (bytes([0x04, 0, 72, 10]) + struct.pack("<I", 100), t.Fes.INVALID_HEADER_FIELD),  # pdo
    (bytes([0x06, 0, 24, 24]) + struct.pack("<I", 24 + (2 << 20)), t.Fes.DATA_LIMIT_EXCEEDED),
    (bytes([0x33, 0, 24, 0]) + struct.pack("<I", 24), t.Fes.INVALID_HEADER_FIELD),  # no such type
])
def test_bad_pdus_name_their_fatal_error(raw: bytes, fes: t.Fes) -> None:
    decoder = t.PduDecoder(HOST)
    decoder.feed(raw)
    with pytest.raises(t.TransportError) as exc:
        decoder.next_pdu()
    assert exc.value.fes == fes and exc.value.header  # what a termination request sends back


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_pdus_or_a_transport_error(raw: bytes) -> None:
    decoder = t.PduDecoder(HOST)
    decoder.feed(raw)
    try:
        while decoder.next_pdu() is not None:
            pass
    except (t.TransportError, t.DataDigestError):
        pass


def test_a_missing_negotiated_header_digest_is_refused() -> None:
    raw = wire(t.PduType.CAPSULE_RESP, t.Completion(cid=1))  # sent without digests
    with pytest.raises(t.TransportError) as exc:
        decode_all(raw, CONTROLLER, digests=1)
    assert (exc.value.fes, exc.value.fei) == (t.Fes.INVALID_HEADER_FIELD, 1)
