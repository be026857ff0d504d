"""The namespace tree: nodes, path names and walking them.

Names are kept as real UTF-8 strings (Crail keeps only 32-bit hashes, so two
names can collide); a path is validated once, here, for every operation.
"""

from __future__ import annotations

import time

from crailpy.errors import InvalidArgument, NotADirectory, NotFound, WrongType
from crailpy.protocol.messages import NodeInfo, NodeType

MAX_NAME = 255  # bytes of one path component
MAX_PATH = 4096  # bytes of a whole path
CONTAINERS = (NodeType.DIRECTORY, NodeType.TABLE)


class Node:
    """One node; `__slots__` keeps a file at a few hundred bytes of namenode memory."""

    __slots__ = ("id", "name", "parent", "type", "storage_class", "location_class", "size",
                 "mtime_ns", "children", "blocks", "parts", "data")

    def __init__(self, id: int, name: str, parent: "Node | None", type: NodeType,
                 storage_class: int, location_class: int) -> None:
        self.id = id
        self.name = name
        self.parent = parent
        self.type = type
        self.storage_class = storage_class
        self.location_class = location_class
        self.size = 0
        self.mtime_ns = time.time_ns()
        self.children: dict[str, Node] | None = {} if type in CONTAINERS else None
        self.blocks: list[int] | None = [] if type == NodeType.FILE else None
        self.parts: list[Node] | None = [] if type == NodeType.MULTIFILE else None
        self.data: bytes | None = None  # a small file's bytes, held here instead of in blocks

    def info(self, block_size: int, committed: bool = True) -> NodeInfo:
        size = len(self.children) if self.children is not None else self.size
        return NodeInfo(self.id, self.type, self.storage_class, self.location_class,
                        int(committed), block_size, size, self.mtime_ns)

    def path(self) -> str:
        names = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(names))


def split_path(path: str) -> list[str]:
    """The components of an absolute path; empty components (`//`, a trailing `/`) are dropped."""
    if not path.startswith("/"):
        raise InvalidArgument(f"path must be absolute: {path!r}")
    if len(path) * 4 <= MAX_NAME and "/." not in path and "\x00" not in path:
        # The usual path: no '.' or '..' component, no NUL, and too short to be too long.
        return [n for n in path.split("/") if n]
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise InvalidArgument(f"path is longer than {MAX_PATH} bytes")
    names = [n for n in path.split("/") if n]
    for name in names:
        if name in (".", ".."):
            raise InvalidArgument(f"path may not contain {name!r}: {path!r}")
        if "\x00" in name:
            raise InvalidArgument(f"path may not contain NUL: {path!r}")
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
            raise InvalidArgument(f"a path component is longer than {MAX_NAME} bytes: {path!r}")
    return names


def walk(root: Node, names: list[str], path: str) -> Node:
    """The node at `names` below `root`, with an error that says which part is missing."""
    node = root
    for i, name in enumerate(names):
        if node.children is None:
            shown = "/" + "/".join(names[:i])
            if node.type == NodeType.MULTIFILE:
                raise WrongType(f"{shown} is a multifile: its parts have no names")
            raise NotADirectory(f"{shown} is not a directory")
        child = node.children.get(name)
        if child is None:
            raise NotFound(f"no such file or directory: {path}")
        node = child
    return node


def subtree(node: Node) -> list[Node]:
    """`node` and every node below it, parts of multifiles included."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out.append(n)
        if n.children:
            stack.extend(n.children.values())
        if n.parts:
            stack.extend(n.parts)
    return out
