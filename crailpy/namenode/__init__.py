"""The namenode: namespace, block allocation and the datanode registry. It never touches file data."""
