"""Client transports: how block bytes move between a client and a datanode.

Each transport gives an `Endpoint` per datanode with two asynchronous
operations (Crail's `StorageEndpoint`, smaller): `write` a buffer to a block
and `read` a block into a buffer. Both return a handle whose `result()` waits;
the buffer is the caller's own, never copied. A write's bytes are stored at
the datanode when it is done, or after `confirm()` where the transport
acknowledges them first (rdma). `write_now` and `read_now` do
the same and wait, for a caller with one transfer to make; `bind` gives a
block's own handle for those, which a reader keeps per block so that a small
read costs as few Python calls as the transport allows. `tcp` works
everywhere; `rdma` moves blocks of DRAM datanodes by one-sided RDMA where a
device is; `nvmf` moves blocks of flash datanodes by NVMe/TCP.
"""

from __future__ import annotations

from typing import Any, Protocol

from crailpy.errors import Stale
from crailpy.protocol.messages import Block, DatanodeInfo


class Transfer(Protocol):
    def result(self) -> Any: ...


class Bound(Protocol):
    """One block of one endpoint (`Endpoint.bind`). Each call is the endpoint's `read_now`
    or `write_now` of that block, or answers None without moving a byte when the endpoint
    cannot make it now (it broke, or is busy with other transfers): the caller then goes
    the general way, through a live endpoint."""

    def read_now(self, offset: int, dest: memoryview) -> int | None: ...

    def write_now(self, offset: int, data: memoryview, placed: bool = False) -> int | None: ...


def check_owner(block: Block, datanode: DatanodeInfo) -> None:
    """Raise Stale for a block of another datanode: a transport that reaches a datanode's
    memory or namespace by offset would otherwise move another block's bytes."""
    if block.datanode != datanode.id:
        raise Stale(f"block of datanode {block.datanode} asked of datanode {datanode.id}")


class BoundBlock:
    """`Bound` for a transport with no quicker way than its endpoint's own calls."""

    __slots__ = ("endpoint", "block")

    def __init__(self, endpoint: "Endpoint", block: Block) -> None:
        self.endpoint, self.block = endpoint, block

    def read_now(self, offset: int, dest: memoryview) -> int | None:
        return None if self.endpoint.broken else self.endpoint.read_now(self.block, offset, dest)

    def write_now(self, offset: int, data: memoryview, placed: bool = False) -> int | None:
        if self.endpoint.broken:
            return None
        return self.endpoint.write_now(self.block, offset, data, placed)


class Endpoint(Protocol):
    name: str

    def write(self, block: Block, offset: int, data: memoryview) -> Transfer:
        """Write `data` at `offset` within `block`."""

    def read(self, block: Block, offset: int, dest: memoryview) -> Transfer:
        """Read `len(dest)` bytes at `offset` within `block` into `dest`."""

    def write_now(self, block: Block, offset: int, data: memoryview, placed: bool = False) -> int:
        """Write and wait, for a caller with nothing else to start first: a transport may
        have a quicker way for one transfer on its own. The number of bytes written.
        `placed`: return only once it is stored, as after `confirm()` (rdma confirms it
        with the write, which costs less than after it)."""

    def read_now(self, block: Block, offset: int, dest: memoryview) -> int:
        """Read and wait, the same way: the number of bytes read."""

    def bind(self, block: Block) -> "Bound":
        """`block` of this endpoint, for transfers waited for at once."""

    def confirm(self) -> None:
        """Every write done so far is stored at the datanode, not only acknowledged: a
        writer calls it before COMMIT. Only rdma acknowledges a write before that."""

    @property
    def broken(self) -> bool:
        """The connection failed; the next use needs a new endpoint."""

    def close(self) -> None: ...
