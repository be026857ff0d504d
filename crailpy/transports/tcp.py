"""The TCP transport: READ and WRITE frames of docs/protocol.md on one connection per datanode."""

from __future__ import annotations

from crailpy.channel import Channel, Pending
from crailpy.config import ClientConfig
from crailpy.protocol.messages import Block, Read, Write


class TcpEndpoint:
    name = "tcp"

    def __init__(self, host: str, port: int, config: ClientConfig) -> None:
        self.channel = Channel.for_client((host, port), config, "datanode", bulk=True)

    def write(self, block: Block, offset: int, data: memoryview) -> Pending:
        return self.channel.submit(Write(block.datanode, block.offset + offset), [data])

    def read(self, block: Block, offset: int, dest: memoryview) -> Pending:
        return self.channel.submit(Read(block.datanode, len(dest), block.offset + offset), into=dest)

    @property
    def broken(self) -> bool:
        return self.channel.broken is not None

    def close(self) -> None:
        self.channel.close()
