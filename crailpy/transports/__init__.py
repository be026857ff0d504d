"""Client transports: how block bytes move between a client and a datanode.

Each transport gives an `Endpoint` per datanode with two asynchronous
operations (Crail's `StorageEndpoint`, smaller): `write` a buffer to a block
and `read` a block into a buffer. Both return a handle whose `result()` waits;
the buffer is the caller's own, never copied. `write_now` and `read_now` do
the same and wait, for a caller with one transfer to make. `tcp` works
everywhere; `rdma` moves blocks of DRAM datanodes by one-sided RDMA where a
device is; `nvmf` moves blocks of flash datanodes by NVMe/TCP.
"""

from __future__ import annotations

from typing import Any, Protocol

from crailpy.protocol.messages import Block


class Transfer(Protocol):
    def result(self) -> Any: ...


class Endpoint(Protocol):
    name: str

    def write(self, block: Block, offset: int, data: memoryview) -> Transfer:
        """Write `data` at `offset` within `block`."""

    def read(self, block: Block, offset: int, dest: memoryview) -> Transfer:
        """Read `len(dest)` bytes at `offset` within `block` into `dest`."""

    def write_now(self, block: Block, offset: int, data: memoryview) -> int:
        """Write and wait, for a caller with nothing else to start first: a transport may
        have a quicker way for one transfer on its own. The number of bytes written."""

    def read_now(self, block: Block, offset: int, dest: memoryview) -> int:
        """Read and wait, the same way: the number of bytes read."""

    @property
    def broken(self) -> bool:
        """The connection failed; the next use needs a new endpoint."""

    def close(self) -> None: ...
