"""The DRAM datanode: a memory pool served over TCP (and, later, one-sided RDMA)."""
