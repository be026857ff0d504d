"""Field types and the codec that turns messages into bytes and back.

A message is a named tuple whose fields are annotated with wire types
(`U8`, `U64`, `Str`, `list_of(Record)` ...). `Layout` reads those annotations
once and builds a list of steps: runs of fixed-size fields become one
`struct.Struct`, strings, bytes and lists are length-prefixed. Sizes therefore come
from `struct`, never from hand counting, and docs/protocol.md describes
exactly these rules. A message of fixed-size fields only is one `pack` and one
`unpack`. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from typing import Annotated, Any, NamedTuple

from crailpy.errors import ProtocolError

MAX_STR = 4096  # bytes in one string (paths are limited to this)
MAX_ITEMS = 100_000  # entries in one list


class Fixed(NamedTuple):
    """A little-endian scalar, by its `struct` format character."""

    code: str


class Text(NamedTuple):
    """UTF-8 text prefixed by its length in bytes as a u16."""


class Blob(NamedTuple):
    """Bytes prefixed by their length as a u32; bounded by the frame that carries them."""


class ListOf(NamedTuple):
    """A u32 count followed by that many records of one type."""

    record: type


U8 = Annotated[int, Fixed("B")]
I8 = Annotated[int, Fixed("b")]
U16 = Annotated[int, Fixed("H")]
U32 = Annotated[int, Fixed("I")]
U64 = Annotated[int, Fixed("Q")]
Str = Annotated[str, Text()]
Bytes = Annotated[bytes, Blob()]


def list_of(record: type) -> Any:
    """The annotation of a list field holding `record`s."""
    return Annotated[tuple, ListOf(record)]


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class Layout:
    """The compiled wire layout of one message (a named tuple)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.steps: list[tuple[str, Any, list[int]]] = []  # (kind, struct or layout, field indexes)
        fixed: list[int] = []
        codes = ""
        for index, name in enumerate(cls._fields):
            hint = cls.__annotations__[name]
            kind = hint if isinstance(hint, type) else hint.__metadata__[0]
            if isinstance(kind, Fixed):
                fixed.append(index)
                codes += kind.code
                continue
            if fixed:
                self.steps.append(("fixed", struct.Struct("<" + codes), fixed))
                fixed, codes = [], ""
            if isinstance(kind, Text):
                self.steps.append(("str", _U16, [index]))
            elif isinstance(kind, Blob):
                self.steps.append(("bytes", _U32, [index]))
            elif isinstance(kind, type):
                self.steps.append(("record", layout_of(kind), [index]))
            elif isinstance(kind, ListOf):
                self.steps.append(("list", layout_of(kind.record), [index]))
            else:
                raise TypeError(f"{cls.__name__}.{name}: unknown wire type {kind!r}")
        if fixed:
            self.steps.append(("fixed", struct.Struct("<" + codes), fixed))
        all_fixed = all(step[0] == "fixed" for step in self.steps)
        # One struct for the whole message when every field is fixed-size (or there is none).
        self.struct = struct.Struct("<" + "".join(s[1].format[1:] for s in self.steps)) \
            if all_fixed else None
        self.fixed_size: int | None = self.struct.size if self.struct else None
        self.min_size = sum(
            {"fixed": lambda a: a.size, "record": lambda a: a.min_size,
             "str": lambda a: 2, "bytes": lambda a: 4, "list": lambda a: 4}[kind](arg)
            for kind, arg, _ in self.steps
        )

    def encode_into(self, obj: Any, out: list) -> None:
        if self.struct is not None:
            out.append(self.struct.pack(*obj))
            return
        for kind, arg, fields in self.steps:
            if kind == "fixed":
                out.append(arg.pack(*[obj[i] for i in fields]))
            elif kind == "str":
                raw = obj[fields[0]].encode("utf-8")
                if len(raw) > MAX_STR:
                    raise ValueError(f"{self._name(fields[0])} is {len(raw)} bytes; "
                                     f"the limit is {MAX_STR}")
                out.append(_U16.pack(len(raw)))
                out.append(raw)
            elif kind == "bytes":
                out.append(_U32.pack(len(obj[fields[0]])))
                out.append(obj[fields[0]])
            elif kind == "record":
                arg.encode_into(obj[fields[0]], out)
            else:
                items = obj[fields[0]]
                if len(items) > MAX_ITEMS:
                    raise ValueError(f"{self._name(fields[0])} has {len(items)} items; "
                                     f"the limit is {MAX_ITEMS}")
                out.append(_U32.pack(len(items)))
                for item in items:
                    arg.encode_into(item, out)

    def decode_from(self, buf: memoryview, pos: int) -> tuple[Any, int]:
        end = len(buf)
        if self.struct is not None:
            if pos + self.struct.size > end:
                raise ProtocolError(f"{self.cls.__name__} is truncated")
            return self.cls._make(self.struct.unpack_from(buf, pos)), pos + self.struct.size
        values: list[Any] = [None] * len(self.cls._fields)
        for kind, arg, fields in self.steps:
            if kind == "fixed":
                if pos + arg.size > end:
                    raise ProtocolError(f"{self.cls.__name__} is truncated")
                for i, value in zip(fields, arg.unpack_from(buf, pos)):
                    values[i] = value
                pos += arg.size
            elif kind in ("str", "bytes"):
                if pos + arg.size > end:
                    raise ProtocolError(f"{self._name(fields[0])} is truncated")
                (length,) = arg.unpack_from(buf, pos)
                pos += arg.size
                if (kind == "str" and length > MAX_STR) or pos + length > end:
                    raise ProtocolError(f"{self._name(fields[0])} has a bad length")
                raw = buf[pos : pos + length]
                try:
                    values[fields[0]] = str(raw, "utf-8") if kind == "str" else raw.tobytes()
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"{self._name(fields[0])} is not UTF-8") from exc
                pos += length
            elif kind == "record":
                values[fields[0]], pos = arg.decode_from(buf, pos)
            else:
                if pos + 4 > end:
                    raise ProtocolError(f"{self._name(fields[0])} is truncated")
                (count,) = _U32.unpack_from(buf, pos)
                pos += 4
                # Refuse counts the remaining bytes cannot hold before building anything.
                if count > MAX_ITEMS or count * arg.min_size > end - pos:
                    raise ProtocolError(f"{self._name(fields[0])} has a bad count")
                items = []
                for _ in range(count):
                    item, pos = arg.decode_from(buf, pos)
                    items.append(item)
                values[fields[0]] = tuple(items)
        return self.cls._make(values), pos

    def _name(self, index: int) -> str:
        return f"{self.cls.__name__}.{self.cls._fields[index]}"


_layouts: dict[type, Layout] = {}


def layout_of(cls: type) -> Layout:
    """The (cached) layout of a message or record class."""
    layout = _layouts.get(cls)
    if layout is None:
        layout = _layouts[cls] = Layout(cls)
    return layout


def encode(obj: Any) -> bytes:
    """The wire bytes of one record."""
    out: list = []
    layout_of(type(obj)).encode_into(obj, out)
    return b"".join(out)


def decode(cls: type, buf: bytes | bytearray | memoryview) -> Any:
    """One record of type `cls` that must fill `buf` exactly."""
    view = memoryview(buf)
    obj, pos = layout_of(cls).decode_from(view, 0)
    if pos != len(view):
        raise ProtocolError(f"{cls.__name__} has {len(view) - pos} trailing bytes")
    return obj
