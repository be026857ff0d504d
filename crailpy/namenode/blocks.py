"""The datanode registry and block allocation across storage and location classes.

A datanode registers a region of `capacity` bytes; the namenode carves it into
blocks of `block_size` and hands them out. A block is kept as one int,
`datanode_id << 40 | block_number`, so that a file's block list stays small
when the namespace holds millions of files.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

from crailpy.errors import NoSpace
from crailpy.protocol.messages import ANY_CLASS, ClassUsage, DatanodeInfo, DatanodeUsage

_NUMBER_BITS = 40


def pack(datanode: int, number: int) -> int:
    return datanode << _NUMBER_BITS | number


def unpack(block: int) -> tuple[int, int]:
    return block >> _NUMBER_BITS, block & ((1 << _NUMBER_BITS) - 1)


@dataclass
class Datanode:
    id: int
    host: str
    port: int
    storage_class: int
    location_class: int
    transports: int
    blocks: int  # how many blocks its region holds
    last_heartbeat: float
    key: int = field(default_factory=lambda: secrets.randbits(63) | 1)  # proves a heartbeat's sender
    alive: bool = True
    next_unused: int = 0  # blocks below this were handed out at least once
    free: list[int] = field(default_factory=list)  # freed block numbers, reused first

    @property
    def used(self) -> int:
        return self.next_unused - len(self.free)

    def info(self) -> DatanodeInfo:
        return DatanodeInfo(self.id, self.storage_class, self.location_class, self.transports,
                            int(self.alive), self.port, self.host)

    def take(self) -> int:
        if self.free:
            return self.free.pop()
        self.next_unused += 1
        return self.next_unused - 1


class BlockAllocator:
    def __init__(self, block_size: int, class_names: list[str]) -> None:
        self.block_size = block_size
        self.class_names = class_names
        self.datanodes: dict[int, Datanode] = {}
        # Ids start anywhere, so that a restarted namenode does not give a datanode an id
        # that clients may still hold for another one.
        self._ids = itertools.count(secrets.randbelow(1 << 30) + 1)
        self._cursor = [0] * len(class_names)  # round-robin position per class

    def register(self, host: str, port: int, storage_class: int, location_class: int,
                 transports: int, capacity: int, now: float) -> Datanode:
        node = Datanode(next(self._ids), host, port, storage_class, location_class, transports,
                        capacity // self.block_size, now)
        self.datanodes[node.id] = node
        return node

    def heartbeat(self, datanode: int, key: int, now: float) -> bool:
        """Record a heartbeat; False if the datanode is unknown, dead, or not the one registered."""
        node = self.datanodes.get(datanode)
        if node is None or not node.alive or node.key != key:
            return False
        node.last_heartbeat = now
        return True

    def expire(self, now: float, dead_after: float) -> list[Datanode]:
        """Declare dead the datanodes silent for `dead_after` seconds."""
        dead = [n for n in self.datanodes.values()
                if n.alive and now - n.last_heartbeat > dead_after]
        for node in dead:
            node.alive = False
            self._forget_if_empty(node)
        return dead

    def allocate(self, storage_class: int, location_class: int, count: int,
                 minimum: int | None = None) -> list[int]:
        """Up to `count` blocks, and at least `minimum` (default: all), of `storage_class`
        or, where it is full, of the classes after it."""
        minimum = count if minimum is None else minimum
        out: list[int] = []
        for cls in range(storage_class, len(self.class_names)):
            while len(out) < count:
                node = self._pick(cls, location_class)
                if node is None:
                    break
                out.append(pack(node.id, node.take()))
        if len(out) >= minimum:
            return out
        self.free(out)
        wanted = self.class_names[storage_class]
        raise NoSpace(f"no free block in storage class {wanted!r} or any class after it")

    def _pick(self, cls: int, location_class: int) -> Datanode | None:
        """The next datanode of `cls` with room, by round robin, preferring the location class."""
        candidates = [n for n in self.datanodes.values()
                      if n.alive and n.storage_class == cls and n.used < n.blocks]
        if location_class != ANY_CLASS:
            local = [n for n in candidates if n.location_class == location_class]
            candidates = local or candidates
        if not candidates:
            return None
        self._cursor[cls] += 1
        return candidates[self._cursor[cls] % len(candidates)]

    def free(self, blocks: list[int]) -> None:
        for block in blocks:
            datanode, number = unpack(block)
            node = self.datanodes.get(datanode)
            if node is not None:
                node.free.append(number)
                if not node.alive:
                    self._forget_if_empty(node)

    def _forget_if_empty(self, node: Datanode) -> None:
        """A dead datanode stays listed while files still name its (lost) blocks."""
        if node.used == 0:
            del self.datanodes[node.id]

    def is_alive(self, datanode: int) -> bool:
        node = self.datanodes.get(datanode)
        return node is not None and node.alive

    def usage(self) -> tuple[list[ClassUsage], list[DatanodeUsage]]:
        bs = self.block_size
        per_class = [ClassUsage(c, 0, 0, name) for c, name in enumerate(self.class_names)]
        nodes = []
        for node in self.datanodes.values():
            if not node.alive:
                nodes.append(DatanodeUsage(node.info(), 0, 0))
                continue
            nodes.append(DatanodeUsage(node.info(), node.blocks * bs, node.used * bs))
            c = per_class[node.storage_class]
            per_class[node.storage_class] = ClassUsage(c.storage_class, c.capacity + node.blocks * bs,
                                                       c.used + node.used * bs, c.name)
        return per_class, nodes
