"""The keys that guard a datanode's pool, one per key region.

Every block location carries the key of its region (`Block.key`). Over TCP the
datanode refuses a READ or WRITE with any other key (STALE); over RDMA the key
is the rkey of the region's own registration, so the device refuses it. When
blocks are freed, the namenode holds them back until their region's key has
changed (docs/rdma.md, "Whom a key lets in"): a client that kept the location
of a freed block then gets an error, never the bytes of the block's next owner.

A change of key takes two steps, so that the key the namenode hands out always
works: the new key is made and *reported* while the old one still works; once
the namenode has acknowledged it, the old key is *retired* (its registration
dropped, after every TCP transfer admitted under it has finished) and that is
reported too. Only then does the namenode reuse the region's freed blocks.
"""

from __future__ import annotations

import collections
import secrets
import threading
from typing import Any, Callable

from crailpy.errors import OutOfRange, Stale
from crailpy.protocol.messages import RegionKey

# (start, length) of a region -> its new key and a handle with close(), e.g. a memory
# registration; without one, keys are random numbers, checked by the TCP path only.
Issuer = Callable[[int, int], tuple[int, Any]]

HISTORY = 256  # keys a region never takes again: its most recent ones


class KeyRegions:
    def __init__(self, capacity: int, region_size: int, issue: Issuer | None = None) -> None:
        self.capacity = capacity
        self.region_size = region_size
        self._issue = issue
        self._lock = threading.Lock()
        count = -(-capacity // region_size)
        self._history = [collections.deque(maxlen=HISTORY) for _ in range(count)]
        self._keys: list[int] = []
        self._handles: list[Any] = []
        for region in range(count):
            key, handle = self._new_key(region)
            self._keys.append(key)
            self._handles.append(handle)
        self._retiring: dict[int, tuple[int, Any]] = {}  # region -> its old key, still working
        self._rotated: set[int] = set()  # new keys to report
        self._acknowledged: set[int] = set()  # reported: retire the old key once it is idle
        self._retired: dict[int, int] = {}  # region -> an old key dropped, to report
        self._active: collections.Counter[tuple[int, int]] = collections.Counter()

    def _new_key(self, region: int) -> tuple[int, Any]:
        """A key the region has not had lately; with an issuer, a fresh registration."""
        history = self._history[region]
        if self._issue is None:
            key = 0
            while key == 0 or key in history:
                key = secrets.randbits(32)
            history.append(key)
            return key, None
        start = region * self.region_size
        length = min(self.region_size, self.capacity - start)
        refused = []
        key, handle = self._issue(start, length)
        while key in history:  # keep it registered meanwhile, so the next key differs
            refused.append(handle)
            key, handle = self._issue(start, length)
        for old in refused:
            old.close()
        history.append(key)
        return key, handle

    def all(self) -> list[RegionKey]:
        with self._lock:
            return [RegionKey(r, k) for r, k in enumerate(self._keys)]

    @property
    def address(self) -> int:
        """Where the pool starts for the device (the registrations' own address)."""
        return self._handles[0].address

    def admit(self, offset: int, length: int, key: int) -> "Admitted":
        """Admit a TCP transfer of the range under `key`, until the `with` block it opens ends."""
        region = offset // self.region_size
        if length and (offset + length - 1) // self.region_size != region:
            raise OutOfRange(f"{length} bytes at {offset} cross a key region's end "
                             f"(regions are {self.region_size} bytes)")
        with self._lock:
            if region >= len(self._keys) or key not in (
                    self._keys[region], self._retiring.get(region, (None,))[0]):
                raise Stale(f"key {key:#x} does not open the region at {offset}: "
                            "its blocks were freed, or the key is not one this datanode gave out")
            self._active[(region, key)] += 1
        return Admitted(self, region, key)

    def _done(self, region: int, key: int) -> None:
        with self._lock:
            self._active[(region, key)] -= 1
            if not self._active[(region, key)]:
                del self._active[(region, key)]

    def rotate(self, requests: tuple[RegionKey, ...]) -> None:
        """Give each region asked for a new key, keeping the old one working for now;
        skip those whose key changed since the namenode knew it, or is changing."""
        for region, known in requests:
            if region >= len(self._keys) or self._keys[region] != known or region in self._retiring:
                continue
            key, handle = self._new_key(region)
            with self._lock:
                self._retiring[region] = (self._keys[region], self._handles[region])
                self._keys[region], self._handles[region] = key, handle
                self._rotated.add(region)

    def rotate_all(self) -> None:
        """New keys everywhere and the old ones dropped at once: after registering again,
        no earlier location may work."""
        for region in range(len(self._keys)):
            key, handle = self._new_key(region)
            with self._lock:
                old = self._handles[region]
                self._keys[region], self._handles[region] = key, handle
            if old is not None:
                old.close()
        with self._lock:
            retiring, self._retiring = self._retiring, {}
            self._rotated.clear()
            self._acknowledged.clear()
            self._retired.clear()
        for _, handle in retiring.values():
            if handle is not None:
                handle.close()

    def reports(self) -> tuple[list[RegionKey], list[RegionKey]]:
        """What the next heartbeat tells the namenode: new keys, and old keys retired.

        Retires the acknowledged old keys that no TCP transfer uses any more.
        """
        idle = []
        with self._lock:
            for region in list(self._acknowledged):
                old_key, handle = self._retiring[region]
                if not self._active[(region, old_key)]:
                    del self._retiring[region]
                    self._acknowledged.discard(region)
                    self._retired[region] = old_key
                    idle.append(handle)
            rotated = [RegionKey(r, self._keys[r]) for r in sorted(self._rotated)]
            retired = [RegionKey(r, k) for r, k in sorted(self._retired.items())]
            self._rotated.clear()
            self._retired.clear()
        for handle in idle:
            if handle is not None:
                handle.close()  # the device refuses the old rkey from here on
        return rotated, retired

    def acknowledged(self, rotated: list[RegionKey]) -> None:
        """The namenode now hands out these new keys: the old ones can go."""
        with self._lock:
            self._acknowledged.update(r for r, _ in rotated if r in self._retiring)

    def unreport(self, rotated: list[RegionKey], retired: list[RegionKey]) -> None:
        """Reports that did not get through: send them again."""
        with self._lock:
            self._rotated.update(r for r, _ in rotated)
            self._retired.update(dict(retired))

    @property
    def busy(self) -> bool:
        """Something is left to report or to retire."""
        with self._lock:
            return bool(self._rotated or self._acknowledged or self._retired)

    def close(self) -> None:
        """Drop every registration; call once no transfer can be admitted any more."""
        handles = self._handles + [h for _, h in self._retiring.values()]
        for handle in handles:
            if handle is not None:
                handle.close()
        self._handles = [None] * len(self._handles)
        self._retiring = {}


class Admitted:
    """A TCP transfer in progress under a region's key: that key is not retired before
    the transfer's `with` block ends."""

    def __init__(self, regions: KeyRegions, region: int, key: int) -> None:
        self._regions, self._region, self._key = regions, region, key

    def __enter__(self) -> "Admitted":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._regions._done(self._region, self._key)
