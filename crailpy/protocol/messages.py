"""Every message of the crailpy protocol, namenode RPC and TCP data transport alike.

Each operation has a request and a response class registered under one
opcode. docs/protocol.md is the prose form of this file; keep them together.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crailpy.protocol.wire import I8, U8, U16, U32, U64, Str, layout_of, list_of


VERSION = 1  # protocol version, carried in every header


class Op(enum.IntEnum):
    PING = 1
    CREATE = 2
    LOOKUP = 3
    GET_BLOCKS = 4
    ALLOC_BLOCKS = 5
    COMMIT = 6
    ABORT = 7
    LIST = 8
    DELETE = 9
    RENAME = 10
    STATFS = 11
    CREATE_PART = 12
    REGISTER = 13
    HEARTBEAT = 14
    LIST_PARTS = 15
    READ = 32
    WRITE = 33


class NodeType(enum.IntEnum):
    DIRECTORY = 0
    FILE = 1
    MULTIFILE = 2
    TABLE = 3


class Transport(enum.IntFlag):
    TCP = 1
    RDMA = 2
    NVMF = 4


# CREATE flags
OVERWRITE = 1  # replace a committed file of the same name when this one commits
PARENTS = 2  # create missing parent directories
EXIST_OK = 4  # creating a container that already exists is not an error

ANY_CLASS = -1  # storage or location class: inherit from the parent / no preference


# ---- records shared by several messages ----

@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: U64
    type: U8
    storage_class: U8
    location_class: I8
    committed: U8
    block_size: U32
    size: U64
    mtime_ns: U64


@dataclass(frozen=True, slots=True)
class DatanodeInfo:
    id: U32
    storage_class: U8
    location_class: I8
    transports: U8
    alive: U8
    port: U16
    host: Str


@dataclass(frozen=True, slots=True)
class Block:
    """Where one block lives: a datanode and a byte offset in its region."""

    datanode: U32
    offset: U64


@dataclass(frozen=True, slots=True)
class Part:
    """A committed part of a multifile."""

    id: U64
    size: U64


@dataclass(frozen=True, slots=True)
class Entry:
    name: Str
    info: NodeInfo


@dataclass(frozen=True, slots=True)
class ClassUsage:
    storage_class: U8
    capacity: U64
    used: U64
    name: Str


@dataclass(frozen=True, slots=True)
class DatanodeUsage:
    info: DatanodeInfo
    capacity: U64
    used: U64


@dataclass(frozen=True, slots=True)
class Error:
    """The body of every response whose status is not OK."""

    message: Str


@dataclass(frozen=True, slots=True)
class Empty:
    pass


# ---- namenode RPC ----

@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Pong:
    server_version: U8
    role: U8  # 0 namenode, 1 datanode


@dataclass(frozen=True, slots=True)
class Create:
    type: U8
    storage_class: I8
    location_class: I8
    flags: U8
    reserve: U64  # files: bytes to allocate blocks for at once, saving an ALLOC_BLOCKS
    path: Str


@dataclass(frozen=True, slots=True)
class Created:
    """A new node; for a file, its write token and the blocks `reserve` asked for."""

    info: NodeInfo
    token: U64  # the write token of a file; 0 for containers
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)


@dataclass(frozen=True, slots=True)
class CreatePart:
    location_class: I8
    reserve: U64
    path: Str


@dataclass(frozen=True, slots=True)
class Lookup:
    max_blocks: U32
    path: Str


@dataclass(frozen=True, slots=True)
class Located:
    """A node; for a file its first blocks and the datanodes they name; for a
    multifile its first committed parts."""

    info: NodeInfo
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)
    parts: list_of(Part)


@dataclass(frozen=True, slots=True)
class GetBlocks:
    node: U64
    first: U64
    count: U32


@dataclass(frozen=True, slots=True)
class AllocBlocks:
    node: U64
    token: U64
    count: U32


@dataclass(frozen=True, slots=True)
class Blocks:
    first: U64
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)


@dataclass(frozen=True, slots=True)
class ListParts:
    node: U64
    first: U64
    count: U32


@dataclass(frozen=True, slots=True)
class Parts:
    first: U64
    parts: list_of(Part)


@dataclass(frozen=True, slots=True)
class Commit:
    node: U64
    token: U64
    size: U64


@dataclass(frozen=True, slots=True)
class Abort:
    node: U64
    token: U64


@dataclass(frozen=True, slots=True)
class ListDir:
    start: U32
    max_entries: U32
    path: Str


@dataclass(frozen=True, slots=True)
class Listing:
    more: U8
    entries: list_of(Entry)


@dataclass(frozen=True, slots=True)
class Delete:
    recursive: U8
    path: Str


@dataclass(frozen=True, slots=True)
class Rename:
    src: Str
    dst: Str


@dataclass(frozen=True, slots=True)
class StatFs:
    pass


@dataclass(frozen=True, slots=True)
class FsUsage:
    block_size: U32
    classes: list_of(ClassUsage)
    datanodes: list_of(DatanodeUsage)


@dataclass(frozen=True, slots=True)
class Register:
    storage_class: U8
    location_class: I8
    transports: U8
    port: U16
    capacity: U64
    host: Str


@dataclass(frozen=True, slots=True)
class Registered:
    datanode: U32
    heartbeat_ms: U32
    key: U64  # sent with every heartbeat: an id alone may be another datanode's after a restart


@dataclass(frozen=True, slots=True)
class Heartbeat:
    datanode: U32
    key: U64


# ---- TCP data transport (datanodes) ----

@dataclass(frozen=True, slots=True)
class Read:
    datanode: U32
    length: U32
    offset: U64


@dataclass(frozen=True, slots=True)
class Write:
    """Followed by the bytes to write: the frame length minus this body."""

    datanode: U32
    offset: U64


@dataclass(frozen=True, slots=True)
class Data:
    """The (empty) body of a READ response; the bytes follow it."""


# opcode -> (request class, response class)
OPERATIONS: dict[int, tuple[type, type]] = {
    Op.PING: (Ping, Pong),
    Op.CREATE: (Create, Created),
    Op.CREATE_PART: (CreatePart, Created),
    Op.LOOKUP: (Lookup, Located),
    Op.LIST_PARTS: (ListParts, Parts),
    Op.GET_BLOCKS: (GetBlocks, Blocks),
    Op.ALLOC_BLOCKS: (AllocBlocks, Blocks),
    Op.COMMIT: (Commit, NodeInfo),
    Op.ABORT: (Abort, Empty),
    Op.LIST: (ListDir, Listing),
    Op.DELETE: (Delete, Empty),
    Op.RENAME: (Rename, Empty),
    Op.STATFS: (StatFs, FsUsage),
    Op.REGISTER: (Register, Registered),
    Op.HEARTBEAT: (Heartbeat, Empty),
    Op.READ: (Read, Data),
    Op.WRITE: (Write, Empty),
}
OPCODES: dict[type, int] = {request: op for op, (request, _) in OPERATIONS.items()}

# Messages followed by raw bytes: their body is fixed-size and the bytes fill the rest of the frame.
CARRIES_DATA = frozenset({Write, Data})
for _cls in CARRIES_DATA:
    assert layout_of(_cls).fixed_size is not None
