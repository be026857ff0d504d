"""The initiator's queue engine (native/nvme_tcp.c) against a scripted controller.

A real socket on loopback, and a peer that answers the initiator's commands
with PDUs chosen here: well-formed ones that a real target sends more rarely
(data in several PDUs, padding before the data, R2Ts in pieces), and hostile
ones. A hostile PDU must fail the queue with a clear error, fail every command
in flight, and write no byte outside a command's buffer.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from typing import Callable, Iterator

import pytest

from crailpy.errors import Unreachable
from crailpy.protocol import nvme_tcp as t
from crailpy.transports import nvme_initiator
from crailpy.transports.nvme_initiator import READ, WRITE, Queue

pytestmark = pytest.mark.skipif(nvme_initiator.lib is None, reason=nvme_initiator.ENGINE_MISSING)
Script = Callable[[socket.socket], None]


def _exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        got = sock.recv(n - len(data))
        if not got:
            raise EOFError
        data += got
    return data


def command_of(sock: socket.socket) -> tuple[t.Command, bytes]:
    """The next capsule from the initiator, and its in-capsule data."""
    header = _exactly(sock, 72)
    ptype, _, hlen, pdo, plen = t.COMMON.unpack_from(header)
    assert (ptype, hlen) == (t.PduType.CAPSULE_CMD, 72)
    rest = _exactly(sock, plen - 72)
    return t.Command.decode(header[8:]), rest[max(pdo - 72, 0):]


def _pdu(ptype: t.PduType, body: object, data: bytes = b"", flags: int = 0, cpda: int = 0) -> bytes:
    return b"".join(bytes(part) for part in t.encode(ptype, body, data, flags, cpda=cpda))


def send(sock: socket.socket, ptype: t.PduType, body: object, data: bytes = b"",
         flags: int = 0) -> None:
    sock.sendall(_pdu(ptype, body, data, flags))


@pytest.fixture
def controller() -> Iterator[Callable[..., Queue]]:
    """Start a scripted controller; give a function that connects a queue to it."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads, errors = [], []

    def start(script: Script, maxh2cdata: int = 128 << 10, cpda: int = 0,
              depth: int = 8, timeout: float = 5.0) -> Queue:
        def serve() -> None:
            sock, _ = listener.accept()
            with sock:
                try:
                    assert _exactly(sock, 128)[0] == t.PduType.IC_REQ
                    send(sock, t.PduType.IC_RESP, t.ICResp(cpda=cpda, maxh2cdata=maxh2cdata))
                    script(sock)
                except (EOFError, OSError):
                    pass  # the initiator gave up on us, as it should
                except BaseException as exc:  # an assertion about what the initiator sent
                    errors.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return Queue("127.0.0.1", listener.getsockname()[1], timeout, depth)

    yield start
    for thread in threads:
        thread.join(10)
    listener.close()
    if errors:
        raise errors[0]


def read_of(blocks: int) -> bytes:
    return t.read_write(READ, 1, 0, blocks)


def test_data_in_several_pdus_with_padding_lands_in_place(controller) -> None:
    payload = os.urandom(3000)

    def script(sock: socket.socket) -> None:
        command, _ = command_of(sock)
        assert command.sgl.length == len(payload)
        send(sock, t.PduType.C2H_DATA, t.DataHeader(command.cid, 0, 1000, 2000), payload[1000:])
        raw = _pdu(t.PduType.C2H_DATA, t.DataHeader(command.cid, 0, 0, 1000), payload[:1000],
                   cpda=7)  # data at byte 32
        assert raw[3] == 32
        sock.sendall(raw)
        send(sock, t.PduType.CAPSULE_RESP, t.Completion(command.cid, result=0x1234))

    queue = controller(script)
    buf = bytearray(3000)
    done = queue.execute(t.Command(READ, nsid=1), data_in=memoryview(buf))
    assert bytes(buf) == payload and done.ok and done.result == 0x1234
    queue.close()


def test_success_flag_ends_a_read_without_a_response(controller) -> None:
    def script(sock: socket.socket) -> None:
        first, _ = command_of(sock)
        second, _ = command_of(sock)
        send(sock, t.PduType.C2H_DATA, t.DataHeader(second.cid, 0, 0, 4), b"2222",
             t.Flag.LAST_PDU | t.Flag.SUCCESS)
        send(sock, t.PduType.C2H_DATA, t.DataHeader(first.cid, 0, 0, 4), b"1111",
             t.Flag.LAST_PDU | t.Flag.SUCCESS)
        _exactly(sock, 1)

    queue = controller(script)
    one, two = bytearray(4), bytearray(4)
    first = queue.submit(read_of(1), data_in=memoryview(one))
    second = queue.submit(read_of(1), data_in=memoryview(two))
    assert first.wait() == second.wait() == 0  # whoever's completion comes first
    assert (one, two) == (b"1111", b"2222")
    queue.close()


def test_one_call_reads_writes_and_says_the_status(controller) -> None:
    payload = os.urandom(512)
    slba = (5 << 32) + 7  # the engine builds the entry: every field as the codec would

    def script(sock: socket.socket) -> None:
        command, _ = command_of(sock)
        expected = t.Command.decode(t.read_write(READ, 3, slba, 1))  # the id and SGL are the engine's
        assert command._replace(cid=0, sgl=expected.sgl) == expected
        assert (command.opc, command.sgl.length) == (READ, len(payload))
        send(sock, t.PduType.C2H_DATA, t.DataHeader(command.cid, 0, 0, len(payload)), payload,
             t.Flag.LAST_PDU | t.Flag.SUCCESS)
        command, data = command_of(sock)
        assert (command.opc, data) == (WRITE, payload)
        send(sock, t.PduType.CAPSULE_RESP, t.Completion(command.cid, status=0x0280))

    queue = controller(script)
    buf = bytearray(len(payload))
    assert queue.rw(False, 3, slba, 1, memoryview(buf)) == 0 and buf == payload
    assert queue.rw(True, 1, 0, 1, memoryview(payload), in_capsule=True) == 0x0280
    queue.close()


def test_r2t_in_pieces_gets_h2cdata_of_at_most_maxh2cdata(controller) -> None:
    payload = os.urandom(10_000)
    received = bytearray(len(payload))

    def script(sock: socket.socket) -> None:
        command, capsule = command_of(sock)
        assert capsule == b"" and command.sgl.kind == t.Sgl.TRANSPORT
        for offset, length in ((6000, 4000), (0, 6000)):
            send(sock, t.PduType.R2T, t.DataHeader(command.cid, 7, offset, length))
            end = offset + length
            while offset < end:
                header = _exactly(sock, 24)
                ptype, flags, _, pdo, plen = t.COMMON.unpack_from(header)
                cccid, ttag, at, n = struct.unpack_from("<HHII", header, 8)
                assert (ptype, cccid, ttag, at, pdo) == (t.PduType.H2C_DATA, command.cid, 7, offset, 24)
                assert n <= 1536 and plen == 24 + n
                assert bool(flags & t.Flag.LAST_PDU) == (at + n == end)
                received[at : at + n] = _exactly(sock, n)
                offset += n
        send(sock, t.PduType.CAPSULE_RESP, t.Completion(command.cid))

    queue = controller(script, maxh2cdata=1536)
    assert queue.submit(t.read_write(WRITE, 1, 0, 20), payload).wait() == 0
    assert received == payload
    queue.close()


@pytest.mark.parametrize("in_capsule", [True, False])
def test_large_write_data_arrives_intact_from_the_callers_pages(controller, in_capsule: bool) -> None:
    """From 64 KiB on, write data goes to the socket by reference (vmsplice, splice),
    after a header sent alone: the controller sees the same PDUs, byte for byte, for
    data starting off a page boundary and longer than one pass of the pipe."""
    backing = bytearray(os.urandom((3 << 20) + 100))
    payload = memoryview(backing)[100:]  # 3 MiB from an odd address
    received = bytearray()

    def script(sock: socket.socket) -> None:
        command, capsule = command_of(sock)
        if in_capsule:
            received.extend(capsule)
        else:
            send(sock, t.PduType.R2T, t.DataHeader(command.cid, 3, 0, len(payload)))
            while len(received) < len(payload):
                header = _exactly(sock, 24)
                assert t.COMMON.unpack_from(header)[0] == t.PduType.H2C_DATA
                received.extend(_exactly(sock, struct.unpack_from("<I", header, 16)[0]))
        send(sock, t.PduType.CAPSULE_RESP, t.Completion(command.cid))

    queue = controller(script, maxh2cdata=1 << 20)
    blocks = len(payload) // 512
    assert queue.submit(t.read_write(WRITE, 1, 0, blocks), payload, in_capsule=in_capsule).wait() == 0
    assert received == payload
    queue.close()


def test_in_capsule_data_honours_the_controllers_alignment(controller) -> None:
    def script(sock: socket.socket) -> None:
        header = _exactly(sock, 72)
        pdo, plen = header[3], struct.unpack_from("<I", header, 4)[0]
        assert (pdo, plen) == (128, 128 + 5)  # CPDA 31: data at a multiple of 128 bytes
        assert _exactly(sock, plen - 72)[56:] == b"hello"
        command = t.Command.decode(header[8:])
        assert (command.sgl.kind, command.sgl.length) == (t.Sgl.IN_CAPSULE, 5)
        send(sock, t.PduType.CAPSULE_RESP, t.Completion(command.cid))

    queue = controller(script, cpda=31)
    assert queue.submit(t.read_write(WRITE, 1, 0, 1), b"hello", in_capsule=True).wait() == 0
    queue.close()


def _hostile(answer: Callable[[t.Command], bytes]) -> Script:
    def script(sock: socket.socket) -> None:
        command, _ = command_of(sock)
        sock.sendall(answer(command))
        sock.shutdown(socket.SHUT_WR)  # what follows the answer, if the initiator reads on
        _exactly(sock, 1)  # until the initiator hangs up

    return script


HOSTILE = {
    "data past the buffer": (lambda c: _pdu(t.PduType.C2H_DATA, t.DataHeader(c.cid, 0, 60, 8), b"x" * 8),
                             "outside the buffer"),
    "data for no command": (lambda c: _pdu(t.PduType.C2H_DATA, t.DataHeader(c.cid + 1, 0, 0, 4), b"xxxx"),
                            "no command in flight"),
    "length against the PDU": (lambda c: _pdu(t.PduType.C2H_DATA, t.DataHeader(c.cid, 0, 0, 4), b"xxxxxx"),
                               "outside the buffer"),
    "response for no command": (lambda c: _pdu(t.PduType.CAPSULE_RESP, t.Completion(c.cid + 3)),
                                "no command in flight"),
    "R2T for a read": (lambda c: _pdu(t.PduType.R2T, t.DataHeader(c.cid, 1, 0, 4)), "does not have"),
    "termination": (lambda c: _pdu(t.PduType.C2H_TERM_REQ, t.TermReq(2, 0, b"")),
                    "fatal error status 0x2"),
    "a digest": (lambda c: _pdu(t.PduType.CAPSULE_RESP, t.Completion(c.cid), flags=t.Flag.HDGST),
                 "digest"),
    "a host's PDU": (lambda c: _pdu(t.PduType.CAPSULE_CMD, c), "header length"),
    "an unknown type": (lambda c: bytes([0x7E, 0, 24, 0, 24, 0, 0, 0]) + bytes(16),
                        "unexpected PDU type 0x7e"),
    "a short stream": (lambda c: _pdu(t.PduType.C2H_DATA, t.DataHeader(c.cid, 0, 0, 64), b"x" * 64)[:40],
                       "closed the connection"),
}


@pytest.mark.parametrize("one_call", [False, True], ids=["submit and wait", "rw"])
@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_pdu_fails_the_queue_and_writes_nothing_outside(controller, case: str,
                                                                  one_call: bool) -> None:
    answer, message = HOSTILE[case]
    queue = controller(_hostile(answer))
    memory = bytearray(b"\xee" * 192)
    buf = memoryview(memory)[64:128]
    with pytest.raises(Unreachable, match=message):
        if one_call:
            queue.rw(False, 1, 0, 1, buf)
        else:
            queue.submit(read_of(1), data_in=buf).wait()
    assert memory[:64] == memory[128:] == b"\xee" * 64
    assert queue.broken
    with pytest.raises(Unreachable, match=message):  # later commands fail at once, with the reason
        queue.submit(read_of(1), data_in=buf)
    queue.close()


def test_random_bytes_from_a_controller_are_an_error_never_a_crash(controller) -> None:
    rng = random.Random(5)
    for _ in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        if rng.random() < 0.5:  # a plausible common header, the rest junk
            junk = bytes([rng.choice([3, 5, 7, 9]), rng.randrange(16), 24, rng.randrange(64)]) + \
                struct.pack("<I", rng.randrange(24, 200)) + junk
        queue = controller(_hostile(lambda c, junk=junk: junk), timeout=0.5)
        memory = bytearray(b"\xee" * 192)
        try:
            queue.submit(read_of(1), data_in=memoryview(memory)[64:128]).wait()
        except Unreachable:
            pass
        assert memory[:64] == memory[128:] == b"\xee" * 64
        queue.close()


def test_a_silent_controller_times_out_and_close_wakes_a_waiter(controller) -> None:
    stop = threading.Event()
    queue = controller(lambda sock: stop.wait(10), timeout=0.3)
    with pytest.raises(Unreachable, match="no answer in 300 ms"):
        queue.submit(read_of(1), data_in=memoryview(bytearray(4))).wait()
    queue.close()

    patient = controller(lambda sock: stop.wait(10), timeout=30)
    pending = patient.submit(read_of(1), data_in=memoryview(bytearray(4)))
    raised = []

    def wait() -> None:
        try:
            pending.wait()
        except Unreachable as exc:
            raised.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    threading.Timer(0.2, patient.close).start()
    waiter.join(5)
    assert not waiter.is_alive() and "closed" in str(raised[0])
    stop.set()


def test_more_commands_than_the_depth_from_one_thread(controller) -> None:
    """Ids come free as commands complete, before anybody waits for them."""
    def script(sock: socket.socket) -> None:
        for i in range(20):
            command, _ = command_of(sock)
            send(sock, t.PduType.C2H_DATA, t.DataHeader(command.cid, 0, 0, 1), bytes([i]),
                 t.Flag.LAST_PDU | t.Flag.SUCCESS)

    queue = controller(script, depth=4)
    bufs = [bytearray(1) for _ in range(20)]
    pending = [queue.submit(read_of(1), data_in=memoryview(b)) for b in bufs]  # 16 over the depth
    assert all(p.wait() == 0 for p in pending)
    assert b"".join(bufs) == bytes(range(20))
    queue.close()
