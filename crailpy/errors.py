"""One error tree for crailpy, and the one table between it and wire status codes.

Every error is a `CrailError`; each also subclasses the built-in exception a
Python user already catches (`FileNotFoundError`, `ConnectionError`, ...), so
`except FileNotFoundError` works on crailpy paths as it does on local ones.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Status codes carried in the header of every response (docs/protocol.md)."""

    OK = 0
    PROTOCOL = 1
    VERSION = 2
    UNKNOWN_OP = 3
    NOT_FOUND = 4
    EXISTS = 5
    NOT_A_DIRECTORY = 6
    IS_A_DIRECTORY = 7
    NOT_EMPTY = 8
    NO_SPACE = 9
    INVALID = 10
    BUSY = 11
    BLOCK_LOST = 12
    STALE = 13
    OUT_OF_RANGE = 14
    WRONG_TYPE = 15
    INTERNAL = 16


class CrailError(Exception):
    """Base of every crailpy error."""

    status = Status.INTERNAL


class ProtocolError(CrailError):
    """A peer sent bytes that are not a valid message."""

    status = Status.PROTOCOL


class VersionMismatch(CrailError):
    """Client and server speak different protocol versions."""

    status = Status.VERSION


class UnknownOperation(CrailError):
    status = Status.UNKNOWN_OP


class NotFound(CrailError, FileNotFoundError):
    status = Status.NOT_FOUND


class Exists(CrailError, FileExistsError):
    status = Status.EXISTS


class NotADirectory(CrailError, NotADirectoryError):
    status = Status.NOT_A_DIRECTORY


class IsADirectory(CrailError, IsADirectoryError):
    status = Status.IS_A_DIRECTORY


class DirectoryNotEmpty(CrailError, OSError):
    status = Status.NOT_EMPTY


class NoSpace(CrailError, OSError):
    """No storage class that the file may use has a free block."""

    status = Status.NO_SPACE


class InvalidArgument(CrailError, ValueError):
    status = Status.INVALID


class Busy(CrailError, OSError):
    """The node is held by another writer, or the write token is not the holder's."""

    status = Status.BUSY


class BlockLost(CrailError, OSError):
    """A block lived on a datanode that is dead or restarted: its bytes are gone."""

    status = Status.BLOCK_LOST


class Stale(CrailError):
    """A request named a datanode incarnation that no longer exists, or a key that no
    longer opens its block's region (the block may live on under a new key)."""

    status = Status.STALE


class Displaced(Stale):
    """A transfer failed with its connection, which another transfer's refused key broke
    (RDMA): nothing was wrong with its own location. Client-side only."""


class OutOfRange(CrailError, ValueError):
    status = Status.OUT_OF_RANGE


class WrongType(CrailError, OSError):
    """The node exists but is of another type (a table where a file was expected...)."""

    status = Status.WRONG_TYPE


class Unreachable(CrailError, ConnectionError):
    """A namenode or datanode could not be reached or dropped the connection."""

    status = Status.INTERNAL


class Timeout(CrailError, TimeoutError):
    status = Status.INTERNAL


_BY_STATUS: dict[int, type[CrailError]] = {
    cls.status: cls
    for cls in (
        ProtocolError, VersionMismatch, UnknownOperation, NotFound, Exists, NotADirectory,
        IsADirectory, DirectoryNotEmpty, NoSpace, InvalidArgument, Busy, BlockLost, Stale,
        OutOfRange, WrongType,
    )
}


def error_for(status: int, message: str) -> CrailError:
    """The exception a client raises for an error reply."""
    return _BY_STATUS.get(status, CrailError)(message)
