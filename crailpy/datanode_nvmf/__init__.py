"""The flash datanode. Today: blocks kept in a file on local disk, served over TCP, so
that storage classes and tiering work on any machine. NVMe-oF targets come next."""
