"""Servers facing bad input: garbage, truncation, absurd lengths, other versions, abrupt
disconnects. Each answers or hangs up on the offender and keeps serving everyone else."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

import crailpy
from crailpy import errors
from crailpy.errors import Status
from crailpy.netio import SocketReader
from crailpy.protocol import frames, wire
from crailpy.protocol import messages as m
from tests import testbed
from tests.cluster.conftest import BLOCK, Cluster


def raw_socket(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def read_reply(sock: socket.socket) -> tuple[frames.Header, bytes]:
    reader = SocketReader(sock)
    header = frames.HEADER.unpack(reader.read_exact(frames.HEADER_SIZE))
    parsed = frames.Header(*header[1:])
    return parsed, bytes(reader.read_exact(parsed.length))


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def datanode_address(cluster: Cluster, i: int = 0) -> str:
    return f"{cluster.datanodes[i].server.host}:{cluster.datanodes[i].server.port}"


def still_serves(store: crailpy.Store) -> None:
    data = os.urandom(200_000)
    store.put("/probe", data)
    assert store.get("/probe") == data


@pytest.fixture(params=["namenode", "datanode"])
def target(request: pytest.FixtureRequest, cluster: Cluster) -> str:
    return cluster.address if request.param == "namenode" else datanode_address(cluster)


def test_garbage_bytes_get_one_error_then_close(target: str, store: crailpy.Store) -> None:
    sock = raw_socket(target)
    sock.sendall(os.urandom(4096))
    header, body = read_reply(sock)
    assert header.status == Status.PROTOCOL and "magic" in wire.decode(m.Error, body).message
    assert closed(sock)
    still_serves(store)


def test_absurd_length_is_refused_before_allocating(target: str, store: crailpy.Store) -> None:
    sock = raw_socket(target)
    sock.sendall(frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.LOOKUP, 0, 0, 5, 2**32 - 1))
    header, _ = read_reply(sock)
    assert header.status == Status.PROTOCOL and header.request_id == 5
    assert closed(sock)
    sock = raw_socket(target)  # a control message over its own limit (1 MiB)
    sock.sendall(frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.LOOKUP, 0, 0, 6, 50 << 20))
    header, body = read_reply(sock)
    assert header.status == Status.PROTOCOL and "over the limit" in wire.decode(m.Error, body).message
    still_serves(store)


def test_other_version_is_told_and_closed(target: str, store: crailpy.Store) -> None:
    sock = raw_socket(target)
    raw = bytearray(frames.encode_request(m.Ping(), 3))
    raw[2] = 9
    sock.sendall(raw)
    header, body = read_reply(sock)
    assert header.status == Status.VERSION and header.version == frames.VERSION
    assert "version 9" in wire.decode(m.Error, body).message
    assert closed(sock)
    still_serves(store)


def test_truncated_messages_and_abrupt_disconnects(target: str, store: crailpy.Store) -> None:
    whole = frames.encode_request(m.Lookup(64, "/some/where"), 1)
    for cut in (1, frames.HEADER_SIZE - 1, frames.HEADER_SIZE, len(whole) - 1):
        sock = raw_socket(target)
        sock.sendall(whole[:cut])
        sock.close()
    sock = raw_socket(target)  # a WRITE that promises more data than it sends
    sock.sendall(frames.encode_request(m.Write(1, 0, 1), 2, data_length=1 << 20) + b"x" * 1000)
    sock.shutdown(socket.SHUT_WR)
    sock.close()
    still_serves(store)


def test_unknown_opcode_and_malformed_body_keep_the_connection(target: str) -> None:
    sock = raw_socket(target)
    sock.sendall(frames.HEADER.pack(frames.MAGIC, frames.VERSION, 200, 0, 0, 1, 3) + b"abc")
    header, _ = read_reply(sock)
    assert (header.status, header.request_id) == (Status.UNKNOWN_OP, 1)
    body = struct.pack("<IH", 64, 500) + b"/x"  # a string length past the end of the body
    sock.sendall(frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.LOOKUP, 0, 0, 2, len(body))
                 + body)
    header, _ = read_reply(sock)
    assert (header.status, header.request_id) == (Status.PROTOCOL, 2)
    sock.sendall(frames.encode_request(m.Ping(), 3))  # the same connection still works
    header, body = read_reply(sock)
    assert (header.status, header.request_id) == (Status.OK, 3)
    assert wire.decode(m.Pong, body).server_version == frames.VERSION


def test_response_frames_sent_to_a_server_are_refused(target: str) -> None:
    sock = raw_socket(target)
    sock.sendall(frames.encode_response(m.Op.PING, 4, m.Pong(1, 0)))
    header, body = read_reply(sock)
    assert header.status == Status.PROTOCOL
    assert "response frame" in wire.decode(m.Error, body).message
    sock.sendall(frames.encode_request(m.Ping(), 5))  # and the connection goes on
    assert read_reply(sock)[0].status == Status.OK


@testbed.not_over_nvmf("an nvmf datanode serves no data over TCP; tests/nvmf sends hostile PDUs")
def test_datanode_refuses_out_of_range_and_stale_ids(cluster: Cluster, store: crailpy.Store) -> None:
    node = cluster.datanodes[0]
    key = node.keys.all()[0].key
    sock = raw_socket(datanode_address(cluster))
    sock.sendall(frames.encode_request(m.Write(node.id, node.store.capacity - 10, key), 1, 100)
                 + b"y" * 100)
    header, _ = read_reply(sock)
    assert header.status == Status.OUT_OF_RANGE
    sock.sendall(frames.encode_request(m.Read(node.id + 1, 10, 0, key), 2))
    header, _ = read_reply(sock)
    assert header.status == Status.STALE
    sock.sendall(frames.encode_request(m.Read(node.id, 2**32 - 1, 2**64 - 2**33, key), 3))
    header, _ = read_reply(sock)
    assert header.status == Status.OUT_OF_RANGE
    sock.sendall(frames.encode_request(m.Write(node.id, 0, key ^ 1), 4, 5) + b"stale")  # a wrong key
    header, body = read_reply(sock)
    assert header.status == Status.STALE and "does not open" in wire.decode(m.Error, body).message
    sock.sendall(frames.encode_request(m.Write(node.id, 0, key), 5, 5) + b"hello")  # still in step
    header, _ = read_reply(sock)
    assert (header.status, header.request_id) == (Status.OK, 5)
    assert node.store.memory[:5] == b"hello"
    still_serves(store)


@testbed.not_over_nvmf("an nvmf datanode serves no data over TCP")
def test_a_datanode_stops_cleanly_under_a_stalled_write(cluster: Cluster) -> None:
    node = cluster.datanodes[0]
    sock = raw_socket(datanode_address(cluster))
    sock.sendall(frames.encode_request(m.Write(node.id, 0, node.keys.all()[0].key), 1, BLOCK)
                 + b"z" * 1000)  # and the rest never comes: its thread waits in the pool
    time.sleep(0.2 * testbed.SLOW)
    [serving] = node.server._conns.values()
    node.stop()  # it waits for that thread, which holds a view of the pool, then unmaps the pool
    assert not serving.is_alive()
    assert node.store.memory.closed
    assert closed(sock)


def test_unregistered_datanode_serves_nobody(cluster: Cluster) -> None:
    from crailpy.datanode import Datanode

    node = Datanode(cluster.config.override("datanode", capacity=1 << 20))  # never started
    node.server.start()
    try:
        sock = raw_socket(f"{node.server.host}:{node.server.port}")
        sock.sendall(frames.encode_request(m.Read(0, 10, 0, 0), 1))
        header, body = read_reply(sock)
        assert header.status == Status.STALE and "not registered" in wire.decode(m.Error, body).message
    finally:
        node.server.stop()
        node.store.close()


def test_namenode_refuses_bad_requests_with_errors(store: crailpy.Store) -> None:
    with pytest.raises(errors.InvalidArgument):
        store._call(m.Create(99, -1, -1, 0, 0, "/x"))
    with pytest.raises(errors.NotFound):
        store._call(m.Commit(123456, 1, 0))
    with pytest.raises(errors.InvalidArgument):
        store._call(m.Create(m.NodeType.FILE, 42, -1, 0, 0, "/x"))
    with pytest.raises(errors.InvalidArgument):
        store._call(m.Register(0, 0, 1, 1, 10, m.NO_RDMA, m.NO_NVMF, 10, ((0, 1),), "tiny"))
    with pytest.raises(errors.InvalidArgument):
        store._call(m.Register(0, -3, 1, 1, 1 << 30, m.NO_RDMA, m.NO_NVMF, 1 << 30, ((0, 1),),
                               "negative location class"))
    with pytest.raises(errors.InvalidArgument, match="once"):
        store._call(m.Register(0, 0, 1, 1, 1 << 30, m.NO_RDMA, m.NO_NVMF, 1 << 29, ((0, 1), (0, 2)),
                               "a region twice"))
    with pytest.raises(errors.InvalidArgument, match="at least 1 item"):
        store._call(m.ListDir(0, 0, "/"))
    still_serves(store)


def test_client_detects_a_server_of_another_version() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake_server() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(frames.HEADER.pack(frames.MAGIC, frames.VERSION + 1, m.Op.PING,
                                        frames.RESPONSE, 0, 1, 2) + b"\x02\x00")
        conn.close()

    threading.Thread(target=fake_server, daemon=True).start()
    store = crailpy.connect(f"127.0.0.1:{port}")
    with pytest.raises(errors.VersionMismatch, match=f"version {frames.VERSION + 1}"):
        store.stat("/")
    listener.close()


def test_many_bad_clients_at_once_do_not_stop_a_good_one(cluster: Cluster, store: crailpy.Store) -> None:
    def offender(i: int) -> None:
        for target in (cluster.address, datanode_address(cluster, i % 2)):
            try:
                sock = raw_socket(target)
                sock.sendall(os.urandom(100 + i))
                sock.close()
            except OSError:
                pass

    threads = [threading.Thread(target=offender, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    still_serves(store)
    for t in threads:
        t.join()
    still_serves(store)


def fake_server(reply: bytes) -> tuple[socket.socket, int]:
    """A one-shot server that answers the first request with `reply` and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(reply)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("reply", [
    # a READ answer that promises 1000 bytes and brings 10, then the peer is gone
    frames.HEADER.pack(frames.MAGIC, frames.VERSION, m.Op.READ, frames.RESPONSE, 0, 1, 1000) + b"x" * 10,
    # an answer with the right id but another operation's opcode
    frames.encode_response(m.Op.PING, 1, m.Pong(1, 1)),
], ids=["cut-mid-data", "wrong-opcode"])
def test_client_fails_cleanly_on_a_broken_datanode(reply: bytes) -> None:
    from crailpy.config import ClientConfig
    from crailpy.transports.tcp import TcpEndpoint

    listener, port = fake_server(reply)
    endpoint = TcpEndpoint("127.0.0.1", port, ClientConfig(connect_timeout=2.0, io_timeout=5.0))
    with pytest.raises((errors.Unreachable, errors.ProtocolError)):
        endpoint.read(m.Block(1, 0, 1), 0, memoryview(bytearray(1000))).result()
    listener.close()
