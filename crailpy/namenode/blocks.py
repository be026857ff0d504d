"""The datanode registry and block allocation across storage and location classes.

A datanode registers a region of `capacity` bytes; the namenode carves it into
blocks of `block_size` and hands them out. Every block of a file is a whole
block except perhaps its last, which can be a smaller *chunk*: a power of two
times 4 KiB, taken from a block split buddy-fashion. A file closed with a
partly used last block gives the rest of it back (`trim`), and a file created
with an exact small size gets only a chunk, so a 5 KiB object holds 8 KiB, not
a whole block. Freed chunks merge with their free buddies into whole blocks
again.

A block or chunk is kept as one int, `datanode << 40 | order << 34 | unit`
(unit: its offset in 4 KiB units; order: log2 of its size in units), so that a
file's block list stays small when the namespace holds millions of files.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Iterable

from crailpy.errors import InvalidArgument, NoSpace
from crailpy.protocol.messages import (
    ANY_CLASS, NO_NVMF, ClassUsage, DatanodeInfo, DatanodeUsage, NvmfTarget, RdmaRegion, RegionKey,
)

UNIT = 4096  # the smallest chunk
_UNIT_BITS = 34
_ORDER_BITS = 6


def pack(datanode: int, order: int, unit: int) -> int:
    return (datanode << _ORDER_BITS | order) << _UNIT_BITS | unit


def unpack(block: int) -> tuple[int, int, int]:
    """(datanode, order, unit) of a packed block."""
    unit = block & ((1 << _UNIT_BITS) - 1)
    rest = block >> _UNIT_BITS
    return rest >> _ORDER_BITS, rest & ((1 << _ORDER_BITS) - 1), unit


def order_for(nbytes: int) -> int:
    """The order of the smallest chunk that holds `nbytes` (at least one unit)."""
    units = max(1, -(-nbytes // UNIT))
    return (units - 1).bit_length()


@dataclass
class Datanode:
    id: int
    host: str
    port: int
    storage_class: int
    location_class: int
    transports: int
    rdma: RdmaRegion
    blocks: int  # how many whole blocks its region holds
    top: int  # the order of a whole block
    last_heartbeat: float
    region_units: int  # units per key region
    keys: list[int]  # the key of each key region
    key: int = field(default_factory=lambda: secrets.randbits(63) | 1)  # proves a heartbeat's sender
    nvmf: NvmfTarget = NO_NVMF
    alive: bool = True
    next_unused: int = 0  # whole blocks from here on were never handed out
    used_units: int = 0  # held by files, committed or being written
    freeing_units: int = 0  # freed, waiting in the quarantine
    free: list[set[int]] = field(default_factory=list)  # free chunks (their units), per order
    # key region -> freed chunks (unit, order) that wait for the region's next key
    quarantine: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    retiring: dict[int, int] = field(default_factory=dict)  # region -> its old key, still working
    awaiting: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # ... its retirement

    def __post_init__(self) -> None:
        self.free = [set() for _ in range(self.top + 1)]

    def key_of(self, unit: int) -> int:
        return self.keys[unit // self.region_units]

    @property
    def capacity_units(self) -> int:
        return self.blocks << self.top

    def info(self) -> DatanodeInfo:
        return DatanodeInfo(self.id, self.storage_class, self.location_class, self.transports,
                            int(self.alive), self.port, self.rdma, self.nvmf, self.host)

    def can_take(self, order: int) -> bool:
        return self.next_unused < self.blocks or any(self.free[order:])

    def take(self, order: int) -> int:
        """The unit of a free chunk of `order`, splitting a larger one if needed."""
        have = next((j for j in range(order, self.top + 1) if self.free[j]), None)
        if have is None:
            unit, have = self.next_unused << self.top, self.top
            self.next_unused += 1
        else:
            unit = self.free[have].pop()
        while have > order:  # keep the lower half, free the upper one
            have -= 1
            self.free[have].add(unit + (1 << have))
        self.used_units += 1 << order
        return unit

    def give_back(self, unit: int, order: int, handed_out: bool = True) -> None:
        """Free a chunk. One that was `handed_out` (located for a client) is reused only
        once its region's key has changed, while the datanode lives."""
        self.used_units -= 1 << order
        if handed_out and self.alive:
            self.quarantine.setdefault(unit // self.region_units, []).append((unit, order))
            self.freeing_units += 1 << order
        else:
            self._merge(unit, order)

    def rotations(self) -> list[RegionKey]:
        """The regions whose key must change before their freed chunks are reused."""
        return [RegionKey(r, self.keys[r]) for r in self.quarantine if r not in self.retiring]

    def rotated(self, region: int, key: int) -> None:
        """The datanode made a new key for `region` (the old one still works): hand out
        the new one. The chunks freed so far wait for the old one's retirement; chunks
        freed from now on may be located under the new one, so they wait for the next.
        A repeated report changes nothing."""
        if key == self.keys[region] or region in self.retiring:
            return
        self.retiring[region] = self.keys[region]
        self.keys[region] = key
        self.awaiting[region] = self.quarantine.pop(region, [])

    def retired(self, region: int, key: int) -> None:
        """The datanode dropped a region's old key: what was freed under it is reusable."""
        if self.retiring.get(region) != key:
            return
        del self.retiring[region]
        self._release(self.awaiting.pop(region, ()))

    def die(self) -> None:
        """Declared dead: nothing is handed out here any more, so nothing waits for a key."""
        self.alive = False
        for chunks in [*self.quarantine.values(), *self.awaiting.values()]:
            self._release(chunks)
        self.quarantine.clear()
        self.awaiting.clear()

    def _release(self, chunks: Iterable[tuple[int, int]]) -> None:
        for unit, order in chunks:
            self.freeing_units -= 1 << order
            self._merge(unit, order)

    def _merge(self, unit: int, order: int) -> None:
        """Make a chunk free, merging it with its buddy as long as the buddy is free too."""
        while order < self.top:
            buddy = unit ^ (1 << order)
            if buddy not in self.free[order]:
                break
            self.free[order].remove(buddy)
            unit, order = min(unit, buddy), order + 1
        self.free[order].add(unit)


class BlockAllocator:
    def __init__(self, block_size: int, class_names: list[str]) -> None:
        """`block_size`: a power of two, at least UNIT (the service checks it)."""
        self.block_size = block_size
        self.top = order_for(block_size)
        self.class_names = class_names
        self.datanodes: dict[int, Datanode] = {}
        # Ids start anywhere, so that a restarted namenode does not give a datanode an id
        # that clients may still hold for another one.
        self._ids = itertools.count(secrets.randbelow(1 << 30) + 1)
        self._cursor = [0] * len(class_names)  # round-robin position per class

    def register(self, host: str, port: int, storage_class: int, location_class: int,
                 transports: int, rdma: RdmaRegion, capacity: int, now: float,
                 region_size: int, keys: list[int], nvmf: NvmfTarget = NO_NVMF) -> Datanode:
        """`region_size`: a multiple of the block size; `keys`: one per region (the service checks)."""
        node = Datanode(next(self._ids), host, port, storage_class, location_class, transports,
                        rdma, capacity // self.block_size, self.top, now,
                        region_size // UNIT, list(keys), nvmf=nvmf)
        self.datanodes[node.id] = node
        return node

    def heartbeat(self, datanode: int, key: int, now: float, rotated: tuple[RegionKey, ...],
                  retired: tuple[RegionKey, ...]) -> list[RegionKey] | None:
        """Record a heartbeat and the key changes it reports; the regions whose key must
        change next. None if the datanode is unknown, dead, or not the one registered."""
        node = self.datanodes.get(datanode)
        if node is None or not node.alive or node.key != key:
            return None
        if any(r >= len(node.keys) or not k for r, k in rotated + retired):
            raise InvalidArgument(f"datanode {datanode} has {len(node.keys)} key regions, "
                                  "and keys are never 0")
        node.last_heartbeat = now
        for region, new_key in rotated:
            node.rotated(region, new_key)
        for region, old_key in retired:
            node.retired(region, old_key)
        return node.rotations()

    def expire(self, now: float, dead_after: float) -> list[Datanode]:
        """Declare dead the datanodes silent for `dead_after` seconds."""
        dead = [n for n in self.datanodes.values()
                if n.alive and now - n.last_heartbeat > dead_after]
        for node in dead:
            node.die()
            self._forget_if_empty(node)
        return dead

    def allocate(self, storage_class: int, location_class: int, count: int,
                 minimum: int | None = None, order: int | None = None) -> list[int]:
        """Up to `count` whole blocks (or chunks of `order`), and at least `minimum`
        (default: all), of `storage_class` or, where it is full, of the classes after it."""
        order = self.top if order is None else order
        minimum = count if minimum is None else minimum
        out: list[int] = []
        for cls in range(storage_class, len(self.class_names)):
            while len(out) < count:
                node = self._pick(cls, location_class, order)
                if node is None:
                    break
                out.append(pack(node.id, order, node.take(order)))
        if len(out) >= minimum:
            return out
        self.free(out, handed_out=False)
        wanted = self.class_names[storage_class]
        freeing = sum(n.freeing_units for n in self.datanodes.values()
                      if n.alive and n.storage_class >= storage_class) * UNIT
        later = f" ({freeing} bytes freed lately come back within a heartbeat)" if freeing else ""
        raise NoSpace(f"no free block in storage class {wanted!r} or any class after it{later}")

    def _pick(self, cls: int, location_class: int, order: int) -> Datanode | None:
        """The next datanode of `cls` with room, by round robin, preferring the location class."""
        candidates = [n for n in self.datanodes.values()
                      if n.alive and n.storage_class == cls and n.can_take(order)]
        if location_class != ANY_CLASS:
            local = [n for n in candidates if n.location_class == location_class]
            candidates = local or candidates
        if not candidates:
            return None
        self._cursor[cls] += 1
        return candidates[self._cursor[cls] % len(candidates)]

    def trim(self, block: int, nbytes: int) -> int:
        """Keep the smallest chunk of `block` that holds its first `nbytes`; the rest is
        free at once (see `commit_freed`)."""
        datanode, order, unit = unpack(block)
        keep = order_for(nbytes)
        node = self.datanodes.get(datanode)
        if keep >= order or node is None:
            return block
        for half in range(order - 1, keep - 1, -1):  # the upper halves, largest first
            node.give_back(unit + (1 << half), half, handed_out=False)
        return pack(datanode, keep, unit)

    def commit_freed(self, blocks: list[int]) -> None:
        """Free what a committing file did not use. It needs no new key: only the file's
        writer had it located, and a writer commits only once every WRITE it sent was
        answered, so no transfer can reach it any more. (Space freed in quarantine here
        made a writer of many files under a block each run out of blocks: each took a
        whole block and gave most of it back only a heartbeat later.)"""
        self.free(blocks, handed_out=False)

    def free(self, blocks: list[int], handed_out: bool = True) -> None:
        """Free chunks; those `handed_out` (located for a client) wait for a new key."""
        for block in blocks:
            datanode, order, unit = unpack(block)
            node = self.datanodes.get(datanode)
            if node is not None:
                node.give_back(unit, order, handed_out)
                if not node.alive:
                    self._forget_if_empty(node)

    def _forget_if_empty(self, node: Datanode) -> None:
        """A dead datanode stays listed while files still name its (lost) blocks."""
        if node.used_units == 0:
            del self.datanodes[node.id]

    def usage(self) -> tuple[list[ClassUsage], list[DatanodeUsage]]:
        per_class = [ClassUsage(c, 0, 0, 0, name) for c, name in enumerate(self.class_names)]
        nodes = []
        for node in self.datanodes.values():
            if not node.alive:
                nodes.append(DatanodeUsage(node.info(), 0, 0))
                continue
            capacity, used = node.capacity_units * UNIT, node.used_units * UNIT
            nodes.append(DatanodeUsage(node.info(), capacity, used))
            c = per_class[node.storage_class]
            per_class[node.storage_class] = c._replace(
                capacity=c.capacity + capacity, used=c.used + used,
                freeing=c.freeing + node.freeing_units * UNIT)
        return per_class, nodes
