"""The nvmf transport: blocks of a flash datanode read and written over NVMe/TCP.

The datanode registered its namespace with the namenode; a block at `offset`
is the namespace's bytes from `offset`, so the client speaks NVMe/TCP to the
target itself (`nvme_initiator.Controller`), with no datanode process on the
data path. Reads land in the caller's buffer; a write is complete on the
target when `result()` returns. Keys are not checked on this path: the
target grants its whole namespace to any host it admits (docs/nvmf.md).
"""

from __future__ import annotations

from crailpy.config import ClientConfig
from crailpy.errors import Unreachable
from crailpy.protocol.messages import Block, DatanodeInfo
from crailpy.transports import BoundBlock, check_owner
from crailpy.transports.nvme_initiator import Controller, Io, NvmeError


class NvmfEndpoint:
    name = "nvmf"

    def __init__(self, datanode: DatanodeInfo, config: ClientConfig) -> None:
        self.datanode = datanode
        target = datanode.nvmf
        try:
            self._controller = Controller(datanode.host, target.port, target.nqn,
                                          timeout=config.connect_timeout)
        except NvmeError as exc:  # a shared port (nvmet) answers for a subsystem it dropped
            raise Unreachable(f"nvme/tcp {datanode.host}:{target.port}: {exc}: the datanode "
                              f"no longer exports {target.nqn} (it stopped or exported anew)") from None
        try:
            self._namespace = self._controller.namespace(1)
        except BaseException:
            self._controller.close()
            raise

    def read(self, block: Block, offset: int, dest: memoryview) -> Io:
        check_owner(block, self.datanode)
        return self._controller.start_read(self._namespace, block.offset + offset, dest)

    def write(self, block: Block, offset: int, data: memoryview) -> Io:
        check_owner(block, self.datanode)
        return self._controller.start_write(self._namespace, block.offset + offset, data)

    def read_now(self, block: Block, offset: int, dest: memoryview) -> int:
        check_owner(block, self.datanode)
        self._controller.pread(self._namespace, block.offset + offset, dest)
        return len(dest)

    def write_now(self, block: Block, offset: int, data: memoryview, placed: bool = False) -> int:
        check_owner(block, self.datanode)
        self._controller.pwrite(self._namespace, block.offset + offset, data)
        return len(data)

    def bind(self, block: Block) -> BoundBlock:
        return BoundBlock(self, block)

    def confirm(self) -> None:
        """A Write completes once the target's controller has its data."""

    @property
    def broken(self) -> bool:
        return self._controller.broken

    def close(self) -> None:
        self._controller.close()
