"""Every message of the crailpy protocol, namenode RPC and TCP data transport alike.

Each operation has a request and a response class registered under one
opcode. docs/protocol.md is the prose form of this file; keep them together.
Messages are named tuples: cheap to define (a client starts fast), to build
and to pack (`struct.pack(*msg)` for all-fixed ones).
"""

import enum
from typing import NamedTuple

from crailpy.protocol.wire import I8, U8, U16, U32, U64, Bytes, Str, list_of


VERSION = 4  # protocol version, carried in every header


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
    PUT = 16
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
EXACT = 8  # a file of at most `reserve` bytes: a small one gets just the space it needs

ANY_CLASS = -1  # storage or location class: inherit from the parent / no preference


# ---- records shared by several messages ----

class NodeInfo(NamedTuple):
    id: U64
    type: U8
    storage_class: U8
    location_class: I8
    committed: U8
    block_size: U32
    size: U64
    mtime_ns: U64


class RdmaRegion(NamedTuple):
    """Where a datanode's pool is reachable by one-sided RDMA; all zero without RDMA.

    A block at `offset` is at remote address `address + offset`, under its `Block.key`.
    """

    port: U16
    address: U64


NO_RDMA = RdmaRegion(0, 0)


class NvmfTarget(NamedTuple):
    """Where a flash datanode's namespace is served by NVMe/TCP: subsystem `nqn`, namespace 1,
    at the datanode's host and `port`; all empty for other datanodes.

    A block at `offset` starts at byte `offset` of the namespace (LBA `offset` / LBA size).
    """

    port: U16
    nqn: Str


NO_NVMF = NvmfTarget(0, "")


class DatanodeInfo(NamedTuple):
    id: U32
    storage_class: U8
    location_class: I8
    transports: U8
    alive: U8
    port: U16
    rdma: RdmaRegion
    nvmf: NvmfTarget
    host: Str


class Block(NamedTuple):
    """Where one block lives: a datanode and a byte offset in its region, and the key
    of the key region holding it (an rkey over RDMA), which the datanode checks."""

    datanode: U32
    offset: U64
    key: U32


class RegionKey(NamedTuple):
    """A datanode's key region and the key that now guards it."""

    region: U32
    key: U32


class Part(NamedTuple):
    """A committed part of a multifile."""

    id: U64
    size: U64


class Entry(NamedTuple):
    name: Str
    info: NodeInfo


class ClassUsage(NamedTuple):
    """`used`: held by files; `freeing`: freed, reusable once its key region's key changes."""

    storage_class: U8
    capacity: U64
    used: U64
    freeing: U64
    name: Str


class DatanodeUsage(NamedTuple):
    info: DatanodeInfo
    capacity: U64
    used: U64


class Error(NamedTuple):
    """The body of every response whose status is not OK."""

    message: Str


class Empty(NamedTuple):
    pass


# ---- namenode RPC ----

class Ping(NamedTuple):
    pass


class Pong(NamedTuple):
    server_version: U8
    role: U8  # 0 namenode, 1 datanode


class Create(NamedTuple):
    type: U8
    storage_class: I8
    location_class: I8
    flags: U8
    reserve: U64  # files: bytes to allocate blocks for at once, saving an ALLOC_BLOCKS
    path: Str


class Created(NamedTuple):
    """A new node; for a file, its write token and the blocks `reserve` asked for."""

    info: NodeInfo
    token: U64  # the write token of a file; 0 for containers
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)


class CreatePart(NamedTuple):
    location_class: I8
    flags: U8  # EXACT, or 0
    reserve: U64
    path: Str


class Put(NamedTuple):
    """A whole small file, created, written and committed at once, its bytes held by the
    namenode (`namenode.inline_max`). It replaces a file of the same name with OVERWRITE,
    and always in a table, as CREATE."""

    flags: U8  # OVERWRITE, PARENTS
    path: Str
    data: Bytes


class Lookup(NamedTuple):
    max_blocks: U32
    path: Str


class Located(NamedTuple):
    """A node; for a file its first blocks and the datanodes they name, or, if the
    namenode holds its bytes and `max_blocks` > 0, those bytes (`data`, as long as the
    file); for a multifile its first committed parts."""

    info: NodeInfo
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)
    parts: list_of(Part)
    data: Bytes


class GetBlocks(NamedTuple):
    """Locations of a committed file's blocks, or with its writer's `token`, of a file
    being written (a writer refreshes its keys so)."""

    node: U64
    first: U64
    count: U32
    token: U64


class AllocBlocks(NamedTuple):
    """`count` whole blocks, then, if `tail` > 0, one chunk for the `tail` bytes that end
    the file (a writer that knows where its file ends asks for just that)."""

    node: U64
    token: U64
    count: U32
    tail: U64


class Blocks(NamedTuple):
    first: U64
    datanodes: list_of(DatanodeInfo)
    blocks: list_of(Block)


class ListParts(NamedTuple):
    node: U64
    first: U64
    count: U32


class Parts(NamedTuple):
    first: U64
    parts: list_of(Part)


class Commit(NamedTuple):
    node: U64
    token: U64
    size: U64


class Abort(NamedTuple):
    node: U64
    token: U64


class ListDir(NamedTuple):
    start: U32
    max_entries: U32
    path: Str


class Listing(NamedTuple):
    more: U8
    entries: list_of(Entry)


class Delete(NamedTuple):
    recursive: U8
    path: Str


class Rename(NamedTuple):
    src: Str
    dst: Str


class StatFs(NamedTuple):
    pass


class FsUsage(NamedTuple):
    """`inline_*`: the namenode's own memory for the bytes of small files (PUT)."""

    block_size: U32
    classes: list_of(ClassUsage)
    datanodes: list_of(DatanodeUsage)
    inline_capacity: U64
    inline_used: U64


class Register(NamedTuple):
    """`keys`: every key region of `region_size` bytes, once (docs/protocol.md 8.8)."""

    storage_class: U8
    location_class: I8
    transports: U8
    port: U16
    capacity: U64
    rdma: RdmaRegion
    nvmf: NvmfTarget
    region_size: U64
    keys: list_of(RegionKey)
    host: Str


class Registered(NamedTuple):
    datanode: U32
    heartbeat_ms: U32
    key: U64  # sent with every heartbeat: an id alone may be another datanode's after a restart


class Heartbeat(NamedTuple):
    """`rotated`: new keys of key regions (the old ones still work); `retired`: old keys
    that no longer work (docs/protocol.md 8.8)."""

    datanode: U32
    key: U64
    rotated: list_of(RegionKey)
    retired: list_of(RegionKey)


class HeartbeatReply(NamedTuple):
    """Key regions holding freed blocks, with the key the namenode knows for each: the
    datanode changes each key that is still that one, and reports the new ones."""

    rotate: list_of(RegionKey)


# ---- TCP data transport (datanodes) ----

class Read(NamedTuple):
    datanode: U32
    length: U32
    offset: U64
    key: U32


class Write(NamedTuple):
    """Followed by the bytes to write: the frame length minus this body."""

    datanode: U32
    offset: U64
    key: U32


class Data(NamedTuple):
    """The (empty) body of a READ response; the bytes follow it."""


# opcode -> (request class, response class)
OPERATIONS: dict[int, tuple[type, type]] = {
    Op.PING: (Ping, Pong),
    Op.CREATE: (Create, Created),
    Op.CREATE_PART: (CreatePart, Created),
    Op.PUT: (Put, NodeInfo),
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
    Op.HEARTBEAT: (Heartbeat, HeartbeatReply),
    Op.READ: (Read, Data),
    Op.WRITE: (Write, Empty),
}
OPCODES: dict[type, int] = {request: op for op, (request, _) in OPERATIONS.items()}

# Messages followed by raw bytes: their body is fixed-size and the bytes fill the rest of the frame.
CARRIES_DATA = frozenset({Write, Data})
