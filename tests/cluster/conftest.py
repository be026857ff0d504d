"""An in-process cluster: a namenode and datanodes serving real sockets on ephemeral ports."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

import crailpy
from crailpy.config import Config
from crailpy.datanode import Datanode
from crailpy.namenode.server import Namenode
from tests import testbed

BLOCK = 64 << 10  # small blocks, so that modest files cross many block boundaries


@dataclass
class Cluster:
    config: Config
    namenode: Namenode
    datanodes: list[Datanode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.namenode.address

    def add_datanode(self, tier: str = "dram", capacity: int = 8 << 20, **extra) -> Datanode:
        tier = testbed.tier(tier)
        if tier == "dram":
            extra = {**testbed.dram_datanode_flags(), **extra}
        elif tier == "nvmf":
            extra = {**testbed.nvmf_datanode_flags(), **extra}
        cfg = self.config.override("datanode", tier=tier, capacity=capacity, **extra)
        node = Datanode(cfg).start()
        self.datanodes.append(node)
        return node

    def connect(self, **client) -> crailpy.Store:
        return crailpy.connect(self.address, self.config.override("client", **client))

    def stop(self) -> None:
        """Stop every part, even after one fails to: a part left running leaks its threads
        and memory into the tests that follow."""
        with contextlib.ExitStack() as stack:  # it runs its callbacks last first
            for part in reversed([*self.datanodes, self.namenode]):
                stack.callback(part.stop)


def start_cluster(tmp_path: Path, dram: int = 2, flash: int = 1, dram_capacity: int = 8 << 20,
                  flash_capacity: int = 32 << 20, flash_tier: str = "nvmf", **namenode) -> Cluster:
    settings = {"block_size": BLOCK, "heartbeat_interval": 0.1 * testbed.SLOW,
                "dead_after": 0.6 * testbed.SLOW, **namenode}
    config = Config().override("namenode", address="127.0.0.1:0", **settings)
    config = config.override("cluster", state_dir=str(tmp_path / "state"))
    config = config.override("client", connect_timeout=2.0 * testbed.SLOW,
                             io_timeout=10.0 * testbed.SLOW)
    nn = Namenode(config).start()
    cluster = Cluster(config.override("namenode", address=nn.address), nn)
    for _ in range(dram):
        cluster.add_datanode("dram", dram_capacity)
    for _ in range(flash):
        cluster.add_datanode(flash_tier, flash_capacity)
    return cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path)
    yield c
    c.stop()


@pytest.fixture
def store(cluster: Cluster) -> Iterator[crailpy.Store]:
    with cluster.connect() as s:
        yield s
