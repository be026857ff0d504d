"""The flash datanode: an NVMe namespace exported over NVMe/TCP by one of three target
back ends (`export`), or, for the `file` tier, blocks in a local file served over TCP."""
