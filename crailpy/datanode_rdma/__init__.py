"""The DRAM datanode's pool: served over TCP, and by one-sided RDMA where a device is."""
