"""The namenode's logic: typed requests in, typed responses out, no transport.

The server binding (`namenode/server.py`) calls one method per opcode while
holding `self.lock`. A *session* is an opaque number the binding gives each
client connection: files opened for writing belong to their session, and
`end_session` aborts them, so a writer that dies leaves no half-visible file
and no leaked blocks.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass

from crailpy.errors import (
    Busy, DirectoryNotEmpty, Exists, InvalidArgument, NoSpace, NotADirectory, NotFound, Stale,
    WrongType,
)
from crailpy.namenode.blocks import UNIT, BlockAllocator, order_for, unpack
from crailpy.namenode.namespace import CONTAINERS, Node, split_path, subtree, walk
from crailpy.protocol import messages as m
from crailpy.protocol.frames import MAX_BODY, MAX_DATA
from crailpy.protocol.messages import ANY_CLASS, EXACT, EXIST_OK, OVERWRITE, PARENTS, NodeType

MAX_BLOCKS_PER_REPLY = 4096
MAX_ENTRIES_PER_REPLY = 1000
MAX_PARTS_PER_REPLY = 4096
MAX_INLINE = MAX_BODY // 2  # most bytes of one file the namenode holds: a PUT fits a body


@dataclass
class OpenFile:
    """A file (or multifile part) being written: not in the tree until committed."""

    node: Node
    token: int
    session: int
    overwrite: bool
    limit: int | None  # EXACT: the most bytes it may hold


class NamenodeService:
    """`inline_max`, `inline_capacity`: the namenode holds the bytes of files PUT whole with
    at most `inline_max` bytes, up to `inline_capacity` bytes in all (docs/design.md)."""

    def __init__(self, block_size: int, class_names: list[str], dead_after: float,
                 heartbeat_interval: float, inline_max: int = 0, inline_capacity: int = 0) -> None:
        if not UNIT <= block_size <= MAX_DATA or block_size & (block_size - 1):
            raise InvalidArgument(f"block_size must be a power of two from {UNIT >> 10} KiB to "
                                  f"{MAX_DATA >> 20} MiB, not {block_size}")
        if not 0 <= inline_max <= min(block_size, MAX_INLINE):
            raise InvalidArgument(f"inline_max must be 0 to {min(block_size, MAX_INLINE)} bytes "
                                  f"(a block, and at most {MAX_INLINE >> 10} KiB), not {inline_max}")
        self.inline_max = inline_max
        self.inline_capacity = inline_capacity
        self.inline_used = 0
        self.lock = threading.Lock()
        self.block_size = block_size
        self.dead_after = dead_after
        self.heartbeat_interval = heartbeat_interval
        self.alloc = BlockAllocator(block_size, class_names)
        self._ids = itertools.count(1)
        self.root = Node(next(self._ids), "", None, NodeType.DIRECTORY, 0, ANY_CLASS)
        self.nodes: dict[int, Node] = {self.root.id: self.root}
        self.open_files: dict[int, OpenFile] = {}
        self.reserved: dict[tuple[int, str], int] = {}  # (dir id, name) -> id of its writer

    # ---- namespace ----

    def ping(self, req: m.Ping, session: int) -> m.Pong:
        return m.Pong(m.VERSION, 0)

    def create(self, req: m.Create, session: int) -> m.Created:
        try:
            node_type = NodeType(req.type)
        except ValueError:
            raise InvalidArgument(f"unknown node type {req.type}") from None
        self._check_classes(req.storage_class, req.location_class)
        names = split_path(req.path)
        if not names:
            if node_type == NodeType.DIRECTORY and req.flags & EXIST_OK:
                return m.Created(self.root.info(self.block_size), 0, (), ())
            raise Exists("/ exists")
        parent = self._parent_for_create(names, req.path, bool(req.flags & PARENTS))
        name = names[-1]
        if parent.type == NodeType.TABLE and node_type != NodeType.FILE:
            raise WrongType(f"a table holds keys (files) only: {req.path}")
        existing = parent.children.get(name)
        in_table = parent.type == NodeType.TABLE
        overwrite = bool(req.flags & OVERWRITE) or in_table
        if existing is not None and node_type != NodeType.FILE \
                and req.flags & EXIST_OK and existing.type == node_type:
            return m.Created(existing.info(self.block_size), 0, (), ())
        self._check_name_free(parent, name, req.path, node_type == NodeType.FILE and overwrite)
        if node_type != NodeType.FILE:
            node = self._new_node(name, parent, node_type, req.storage_class, req.location_class)
            parent.children[name] = node
            parent.mtime_ns = node.mtime_ns
            return m.Created(node.info(self.block_size), 0, (), ())
        created = self._open(name, parent, req.storage_class, req.location_class, req.reserve,
                             bool(req.flags & EXACT), session, overwrite)
        if not in_table:
            self.reserved[(parent.id, name)] = created.info.id
        return created

    def create_part(self, req: m.CreatePart, session: int) -> m.Created:
        self._check_classes(ANY_CLASS, req.location_class)
        multifile = self._resolve(req.path)
        if multifile.type != NodeType.MULTIFILE:
            raise WrongType(f"{req.path} is not a multifile")
        return self._open("", multifile, ANY_CLASS, req.location_class, req.reserve,
                          bool(req.flags & EXACT), session, overwrite=False)

    def put(self, req: m.Put, session: int) -> m.NodeInfo:
        """A small file whole, its bytes kept here: one round trip instead of a CREATE, a
        WRITE and a COMMIT, and one again to read it (LOOKUP brings the bytes)."""
        size = len(req.data)
        if size > self.inline_max:
            raise NoSpace(f"the namenode holds files of at most {self.inline_max} bytes, "
                          f"not {size}: write it to blocks")
        names = split_path(req.path)
        if not names:
            raise Exists("/ exists")
        parent = self._parent_for_create(names, req.path, bool(req.flags & PARENTS))
        if parent.storage_class != 0:  # its memory is for the first (fastest) class only
            raise NoSpace(f"the namenode holds files of storage class "
                          f"{self.alloc.class_names[0]} only: write it to blocks")
        name = names[-1]
        self._check_name_free(parent, name, req.path,
                              bool(req.flags & OVERWRITE) or parent.type == NodeType.TABLE)
        old = parent.children.get(name)
        held = len(old.data) if old is not None and old.data is not None else 0
        if self.inline_used - held + size > self.inline_capacity:
            raise NoSpace(f"the namenode's {self.inline_capacity} bytes for small files are "
                          "in use: write it to blocks")
        node = self._new_node(name, parent, NodeType.FILE, ANY_CLASS, ANY_CLASS)
        node.data = req.data
        node.size = size
        self.inline_used += size
        if old is not None:
            self._remove(old)
        parent.children[name] = node
        parent.mtime_ns = node.mtime_ns
        return node.info(self.block_size)

    def lookup(self, req: m.Lookup, session: int) -> m.Located:
        node = self._resolve(req.path)
        info = node.info(self.block_size)
        if node.type == NodeType.FILE:
            if node.data is not None:
                return m.Located(info, (), (), (), node.data if req.max_blocks else b"")
            count = min(req.max_blocks, MAX_BLOCKS_PER_REPLY)
            datanodes, blocks = self._locate(node.blocks[:count])
            return m.Located(info, datanodes, blocks, (), b"")
        if node.type == NodeType.MULTIFILE:
            return m.Located(info, (), (), _parts(node, 0, MAX_PARTS_PER_REPLY), b"")
        return m.Located(info, (), (), (), b"")

    def list_parts(self, req: m.ListParts, session: int) -> m.Parts:
        node = self.nodes.get(req.node)
        if node is None or node.type != NodeType.MULTIFILE:
            raise NotFound(f"no multifile with id {req.node}")
        return m.Parts(req.first, _parts(node, req.first, _page(req.count, MAX_PARTS_PER_REPLY)))

    def get_blocks(self, req: m.GetBlocks, session: int) -> m.Blocks:
        if req.token:  # a writer refreshing its own blocks' keys
            node = self._writer(req.node, req.token).node
        else:
            node = self.nodes.get(req.node)
            if node is None or node.type != NodeType.FILE or req.node in self.open_files:
                raise NotFound(f"no committed file with id {req.node}")
        count = _page(req.count, MAX_BLOCKS_PER_REPLY)
        datanodes, blocks = self._locate(node.blocks[req.first : req.first + count])
        return m.Blocks(req.first, datanodes, blocks)

    def alloc_blocks(self, req: m.AllocBlocks, session: int) -> m.Blocks:
        open_file = self._writer(req.node, req.token)
        if req.count > MAX_BLOCKS_PER_REPLY or not (req.count or req.tail):
            raise InvalidArgument(f"can allocate 0 to {MAX_BLOCKS_PER_REPLY} blocks and a tail, "
                                  "and not nothing")
        if req.tail > self.block_size:
            raise InvalidArgument(f"a tail of {req.tail} bytes is more than a block")
        node = open_file.node
        first = len(node.blocks)
        end = (first + req.count) * self.block_size + req.tail if req.tail else None
        if open_file.limit is not None and (first * self.block_size >= open_file.limit
                                            or (end or 0) > open_file.limit):
            raise InvalidArgument(f"file {node.id} was created for at most {open_file.limit} bytes")
        cls, loc = node.storage_class, node.location_class
        if req.tail:  # all or nothing: the file's end is known
            new = self.alloc.allocate(cls, loc, req.count)
            try:
                new += self.alloc.allocate(cls, loc, 1, order=order_for(req.tail))
            except NoSpace:
                self.alloc.free(new, handed_out=False)
                raise
            open_file.limit = end
        else:
            new = self.alloc.allocate(cls, loc, req.count, minimum=1)
        node.blocks.extend(new)
        datanodes, blocks = self._locate(new)
        return m.Blocks(first, datanodes, blocks)

    def commit(self, req: m.Commit, session: int) -> m.NodeInfo:
        open_file = self._writer(req.node, req.token)
        node = open_file.node
        needed = -(-req.size // self.block_size)
        if open_file.limit is not None and req.size > open_file.limit:
            raise InvalidArgument(f"size {req.size} is over the {open_file.limit} bytes "
                                  "the file was created for")
        if needed > len(node.blocks):
            raise InvalidArgument(f"size {req.size} needs {needed} blocks; "
                                  f"only {len(node.blocks)} were allocated")
        parent = node.parent
        if self.nodes.get(parent.id) is not parent:
            self._drop(open_file)
            raise NotFound(f"the directory of {node.name or 'this part'} was deleted while it was written")
        old = parent.children.get(node.name) if parent.children is not None else None
        if old is not None and (old.type != NodeType.FILE or not open_file.overwrite):
            self._drop(open_file)  # the reservation should have prevented this; never clobber
            raise Exists(f"{old.path()} exists")
        del self.open_files[node.id]
        self.alloc.commit_freed(node.blocks[needed:])
        del node.blocks[needed:]
        if needed:  # the last block keeps only the chunk its bytes need
            node.blocks[-1] = self.alloc.trim(node.blocks[-1], req.size - (needed - 1) * self.block_size)
        node.size = req.size
        node.mtime_ns = time.time_ns()
        if parent.type == NodeType.MULTIFILE:
            parent.parts.append(node)
            parent.size += node.size
        else:
            self.reserved.pop((parent.id, node.name), None)
            if old is not None:
                self._remove(old)
            parent.children[node.name] = node
        parent.mtime_ns = node.mtime_ns
        return node.info(self.block_size)

    def abort(self, req: m.Abort, session: int) -> m.Empty:
        self._drop(self._writer(req.node, req.token))
        return m.Empty()

    def list_dir(self, req: m.ListDir, session: int) -> m.Listing:
        count = _page(req.max_entries, MAX_ENTRIES_PER_REPLY)
        names = split_path(req.path)
        node = walk(self.root, names, req.path)
        _check_container(node, names)
        page = itertools.islice(node.children.items(), req.start, req.start + count)
        entries = tuple(m.Entry(name, child.info(self.block_size)) for name, child in page)
        more = req.start + len(entries) < len(node.children)
        return m.Listing(int(more), entries)

    def delete(self, req: m.Delete, session: int) -> m.Empty:
        names = split_path(req.path)
        if not names:
            raise InvalidArgument("/ cannot be deleted")
        node = walk(self.root, names, req.path)
        if (node.children or node.parts) and not req.recursive:
            raise DirectoryNotEmpty(f"{req.path} is not empty (delete it recursively)")
        del node.parent.children[node.name]
        node.parent.mtime_ns = time.time_ns()
        self._remove(node)
        return m.Empty()

    def rename(self, req: m.Rename, session: int) -> m.Empty:
        src_names, dst_names = split_path(req.src), split_path(req.dst)
        if not src_names or not dst_names:
            raise InvalidArgument("/ cannot be renamed")
        node = walk(self.root, src_names, req.src)
        if dst_names[: len(src_names)] == src_names:
            raise InvalidArgument(f"cannot move {req.src} into itself")
        parent = self._container(dst_names[:-1], req.dst)
        name = dst_names[-1]
        if parent.type == NodeType.TABLE and node.type != NodeType.FILE:
            raise WrongType(f"a table holds keys (files) only: {req.dst}")
        if name in parent.children:
            raise Exists(f"{req.dst} exists")
        if (parent.id, name) in self.reserved:
            raise Busy(f"{req.dst} is being written by another writer")
        del node.parent.children[node.name]
        node.name, node.parent = name, parent
        parent.children[name] = node
        parent.mtime_ns = time.time_ns()
        return m.Empty()

    # ---- datanodes ----

    def statfs(self, req: m.StatFs, session: int) -> m.FsUsage:
        classes, datanodes = self.alloc.usage()
        return m.FsUsage(self.block_size, tuple(classes), tuple(datanodes), self.inline_capacity,
                         self.inline_used)

    def register(self, req: m.Register, session: int) -> m.Registered:
        if req.storage_class >= len(self.alloc.class_names):
            raise InvalidArgument(f"storage class {req.storage_class} is not configured "
                                  f"(classes: {', '.join(self.alloc.class_names)})")
        if req.location_class < 0:
            raise InvalidArgument(f"a datanode's location class is 0 to 127, not {req.location_class}")
        if req.capacity < self.block_size:
            raise InvalidArgument(f"capacity {req.capacity} is below one block ({self.block_size})")
        if bool(req.transports & m.Transport.RDMA) != bool(req.rdma.port):
            raise InvalidArgument("a datanode offering RDMA names its RDMA port, and only then")
        offers_nvmf = bool(req.transports & m.Transport.NVMF)
        if offers_nvmf != bool(req.nvmf.port) or offers_nvmf != bool(req.nvmf.nqn):
            raise InvalidArgument("a datanode offering NVMe/TCP names its port and subsystem NQN, "
                                  "and only then")
        if not req.region_size or req.region_size % self.block_size:
            raise InvalidArgument(f"key region size {req.region_size} is not a multiple of the "
                                  f"block size ({self.block_size})")
        regions = -(-req.capacity // req.region_size)
        keys = dict(req.keys)
        if sorted(keys) != list(range(regions)) or len(req.keys) != regions or 0 in keys.values():
            raise InvalidArgument(f"a datanode of {req.capacity} bytes in key regions of "
                                  f"{req.region_size} names a nonzero key for each of its "
                                  f"{regions} regions, once")
        node = self.alloc.register(req.host, req.port, req.storage_class, req.location_class,
                                   req.transports, req.rdma, req.capacity, time.monotonic(),
                                   req.region_size, [keys[r] for r in range(regions)], req.nvmf)
        return m.Registered(node.id, int(self.heartbeat_interval * 1000), node.key)

    def heartbeat(self, req: m.Heartbeat, session: int) -> m.HeartbeatReply:
        rotate = self.alloc.heartbeat(req.datanode, req.key, time.monotonic(), req.rotated,
                                      req.retired)
        if rotate is None:
            raise Stale(f"datanode {req.datanode} is unknown or was declared dead; register again")
        return m.HeartbeatReply(tuple(rotate))

    def expire_datanodes(self) -> list[int]:
        """Declare silent datanodes dead; their blocks are lost to every file that had them."""
        return [n.id for n in self.alloc.expire(time.monotonic(), self.dead_after)]

    def end_session(self, session: int) -> None:
        for open_file in [f for f in self.open_files.values() if f.session == session]:
            self._drop(open_file)

    # ---- helpers ----

    def _check_classes(self, storage_class: int, location_class: int) -> None:
        if storage_class != ANY_CLASS and not 0 <= storage_class < len(self.alloc.class_names):
            raise InvalidArgument(f"storage class {storage_class} is not configured "
                                  f"(classes: {', '.join(self.alloc.class_names)})")
        if location_class < ANY_CLASS:
            raise InvalidArgument(f"location class {location_class} is not -1 (any) or 0 to 127")

    def _new_node(self, name: str, parent: Node, node_type: NodeType, storage_class: int,
                  location_class: int) -> Node:
        node = Node(next(self._ids), name, parent, node_type,
                    parent.storage_class if storage_class == ANY_CLASS else storage_class,
                    parent.location_class if location_class == ANY_CLASS else location_class)
        self.nodes[node.id] = node
        return node

    def _open(self, name: str, parent: Node, storage_class: int, location_class: int,
              reserve: int, exact: bool, session: int, overwrite: bool) -> m.Created:
        """A new file being written, with space for its first `reserve` bytes: whole blocks,
        or for an EXACT file smaller than a block, one chunk of its size. Another file
        under a block gets nothing yet: its writer gathers its bytes and asks for just
        their chunk at the end. A whole block, cut down at COMMIT, would leave its rest
        in fragments that no whole block can be made of while the file lives."""
        cls = parent.storage_class if storage_class == ANY_CLASS else storage_class
        loc = parent.location_class if location_class == ANY_CLASS else location_class
        if exact and 0 < reserve < self.block_size:  # its space, or NO_SPACE: it cannot grow
            blocks = self.alloc.allocate(cls, loc, 1, order=order_for(reserve))
        elif reserve < self.block_size:
            blocks = []
        else:
            count = min(-(-reserve // self.block_size), MAX_BLOCKS_PER_REPLY)
            blocks = self.alloc.allocate(cls, loc, count, minimum=0)  # a hint: what is free
        node = self._new_node(name, parent, NodeType.FILE, cls, loc)
        node.blocks.extend(blocks)
        token = secrets.randbits(63) | 1  # never 0, and a positive signed 64-bit number
        self.open_files[node.id] = OpenFile(node, token, session, overwrite,
                                            reserve if exact else None)
        datanodes, located = self._locate(blocks)
        return m.Created(node.info(self.block_size, committed=False), token, datanodes, located)

    def _resolve(self, path: str) -> Node:
        return walk(self.root, split_path(path), path)

    def _container(self, names: list[str], path: str) -> Node:
        parent = walk(self.root, names, path)
        _check_container(parent, names)
        return parent

    def _parent_for_create(self, names: list[str], path: str, parents: bool) -> Node:
        if not parents:
            return self._container(names[:-1], path)
        node = self.root
        for i, name in enumerate(names[:-1]):
            _check_container(node, names[:i])
            child = node.children.get(name)
            if child is None and node.type == NodeType.TABLE:
                raise WrongType(f"a table holds keys (files) only: /{'/'.join(names[: i + 1])}")
            if child is None and (node.id, name) in self.reserved:
                raise Busy(f"/{'/'.join(names[: i + 1])} is being written by another writer")
            if child is None:
                child = self._new_node(name, node, NodeType.DIRECTORY, ANY_CLASS, ANY_CLASS)
                node.children[name] = child
            node = child
        _check_container(node, names[:-1])
        return node

    def _check_name_free(self, parent: Node, name: str, path: str, replace_file: bool) -> None:
        """A new node may take `name` in `parent`: nothing is there, or a file that the new
        file replaces (`replace_file`: it is one, with OVERWRITE or in a table); and no
        writer is creating a file there (in a table the last to commit wins)."""
        existing = parent.children.get(name)
        if existing is not None and not (replace_file and existing.type == NodeType.FILE):
            raise Exists(f"{path} exists")
        if parent.type != NodeType.TABLE and (parent.id, name) in self.reserved:
            raise Busy(f"{path} is being written by another writer")

    def _writer(self, node_id: int, token: int) -> OpenFile:
        open_file = self.open_files.get(node_id)
        if open_file is None:
            raise NotFound(f"no file with id {node_id} is open for writing (it was committed or "
                           "aborted, or its writer's namenode connection was lost)")
        if open_file.token != token:
            raise Busy(f"file {node_id} is held by another writer")
        return open_file

    def _drop(self, open_file: OpenFile) -> None:
        node = open_file.node
        del self.open_files[node.id]
        if self.reserved.get((node.parent.id, node.name)) == node.id:
            del self.reserved[(node.parent.id, node.name)]
        self._remove(node)

    def _remove(self, node: Node) -> None:
        """Forget `node` and its subtree and free their blocks."""
        for n in subtree(node):
            self.nodes.pop(n.id, None)
            if n.blocks:
                self.alloc.free(n.blocks)
            if n.data is not None:
                self.inline_used -= len(n.data)

    def _locate(self, packed: list[int]) -> tuple[tuple[m.DatanodeInfo, ...], tuple[m.Block, ...]]:
        blocks, seen = [], {}
        for block in packed:
            datanode, _, unit = unpack(block)
            node = self.alloc.datanodes[datanode]
            if datanode not in seen:
                seen[datanode] = node.info()
            blocks.append(m.Block(datanode, unit * UNIT, node.key_of(unit)))
        return tuple(seen.values()), tuple(blocks)


def _check_container(node: Node, names: list[str]) -> None:
    """Files and multifiles cannot hold named children."""
    if node.type in CONTAINERS:
        return
    kind = NodeType(node.type).name.lower()
    error = NotADirectory if node.type == NodeType.FILE else WrongType
    raise error(f"/{'/'.join(names)} is a {kind}, not a directory or table")


def _parts(multifile: Node, first: int, count: int) -> tuple[m.Part, ...]:
    return tuple(m.Part(p.id, p.size) for p in multifile.parts[first : first + count])


def _page(count: int, limit: int) -> int:
    """How many items a paged reply carries: 1 to `limit`, as asked."""
    if count == 0:
        raise InvalidArgument("a page must ask for at least 1 item")
    return min(count, limit)
