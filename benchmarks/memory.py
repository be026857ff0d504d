"""Memory: a datanode's resident memory against its capacity, and the namenode's memory
per file as the namespace grows to `files` files."""

from __future__ import annotations

from benchmarks import harness


def _pid(crail: harness.Crail, name: str) -> int:
    return int((crail.state_dir / f"{name}.pid").read_text())


def run(crail: harness.Crail, files: int) -> dict:
    import crailpy

    namenode = _pid(crail, "namenode")
    before = harness.rss_bytes(namenode)
    batch = 50_000
    with crailpy.connect(crail.address) as store:
        store.mkdir("/mem")
        for start in range(0, files, batch):
            store.mkdir(f"/mem/d{start // batch}")
            store.put_many({f"/mem/d{start // batch}/file-{i:07d}": b""
                            for i in range(start, min(files, start + batch))}, 64)
        after = harness.rss_bytes(namenode)
        assert sum(s.size for s in store.list("/mem")) == files
        store.delete("/mem", recursive=True)
    datanode = _pid(crail, "datanode-dram-0")
    capacity = crail.config.cluster.dram_capacity
    rss = harness.rss_bytes(datanode)
    return {"files": files, "namenode bytes per file": round((after - before) / files),
            "datanode capacity MiB": capacity >> 20, "datanode RSS MiB": round(rss / 2**20, 1),
            "datanode RSS vs capacity": round(rss / capacity, 3)}
