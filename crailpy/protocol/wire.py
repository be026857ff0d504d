"""Field types and the codec that turns message dataclasses into bytes and back.

A message is a frozen dataclass whose fields are annotated with wire types
(`U8`, `U64`, `Str`, `list_of(Record)` ...). `compile_layout` reads those
annotations once and builds a list of steps: runs of fixed-size fields become
one `struct.Struct`, strings and lists are length-prefixed. Sizes therefore
come from `struct`, never from hand counting, and docs/protocol.md describes
exactly these rules. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from typing import Annotated, Any, Callable

from crailpy.errors import ProtocolError

MAX_STR = 4096  # bytes in one string (paths are limited to this)
MAX_ITEMS = 100_000  # entries in one list


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A little-endian scalar, by its `struct` format character."""

    code: str


@dataclasses.dataclass(frozen=True)
class Text:
    """UTF-8 text prefixed by its length in bytes as a u16."""


@dataclasses.dataclass(frozen=True)
class ListOf:
    """A u32 count followed by that many records of one type."""

    record: type


U8 = Annotated[int, Fixed("B")]
I8 = Annotated[int, Fixed("b")]
U16 = Annotated[int, Fixed("H")]
U32 = Annotated[int, Fixed("I")]
U64 = Annotated[int, Fixed("Q")]
Str = Annotated[str, Text()]


def list_of(record: type) -> Any:
    """The annotation of a list field holding `record`s."""
    return Annotated[tuple, ListOf(record)]


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")

Encoder = Callable[[Any, list], None]
Decoder = Callable[[memoryview, int], tuple[list, int]]


class Layout:
    """The compiled wire layout of one dataclass."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.steps: list[tuple[str, Any, list[str]]] = []
        hints = typing.get_type_hints(cls, include_extras=True)
        fixed_names: list[str] = []
        fixed_codes = ""
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            kind = hint if isinstance(hint, type) else hint.__metadata__[0]
            if isinstance(kind, Fixed):
                fixed_names.append(field.name)
                fixed_codes += kind.code
                continue
            if fixed_names:
                self.steps.append(("fixed", struct.Struct("<" + fixed_codes), fixed_names))
                fixed_names, fixed_codes = [], ""
            if isinstance(kind, Text):
                self.steps.append(("str", None, [field.name]))
            elif isinstance(kind, type):
                self.steps.append(("record", layout_of(kind), [field.name]))
            elif isinstance(kind, ListOf):
                self.steps.append(("list", layout_of(kind.record), [field.name]))
            else:
                raise TypeError(f"{cls.__name__}.{field.name}: unknown wire type {kind!r}")
        if fixed_names:
            self.steps.append(("fixed", struct.Struct("<" + fixed_codes), fixed_names))
        self.fixed_size: int | None = (
            sum(step[1].size for step in self.steps)
            if all(step[0] == "fixed" for step in self.steps)
            else None
        )
        self.min_size = sum(
            {"fixed": lambda a: a.size, "record": lambda a: a.min_size,
             "str": lambda a: 2, "list": lambda a: 4}[kind](arg)
            for kind, arg, _ in self.steps
        )

    def encode_into(self, obj: Any, out: list) -> None:
        for kind, arg, names in self.steps:
            if kind == "fixed":
                out.append(arg.pack(*[getattr(obj, n) for n in names]))
            elif kind == "str":
                raw = getattr(obj, names[0]).encode("utf-8")
                if len(raw) > MAX_STR:
                    raise ValueError(f"{names[0]} is {len(raw)} bytes; the limit is {MAX_STR}")
                out.append(_U16.pack(len(raw)))
                out.append(raw)
            elif kind == "record":
                arg.encode_into(getattr(obj, names[0]), out)
            else:
                items = getattr(obj, names[0])
                if len(items) > MAX_ITEMS:
                    raise ValueError(f"{names[0]} has {len(items)} items; the limit is {MAX_ITEMS}")
                out.append(_U32.pack(len(items)))
                for item in items:
                    arg.encode_into(item, out)

    def decode_from(self, buf: memoryview, pos: int) -> tuple[Any, int]:
        values: dict[str, Any] = {}
        end = len(buf)
        for kind, arg, names in self.steps:
            if kind == "fixed":
                if pos + arg.size > end:
                    raise ProtocolError(f"{self.cls.__name__} is truncated")
                values.update(zip(names, arg.unpack_from(buf, pos)))
                pos += arg.size
            elif kind == "str":
                if pos + 2 > end:
                    raise ProtocolError(f"{self.cls.__name__}.{names[0]} is truncated")
                (length,) = _U16.unpack_from(buf, pos)
                pos += 2
                if length > MAX_STR or pos + length > end:
                    raise ProtocolError(f"{self.cls.__name__}.{names[0]} has a bad length")
                try:
                    values[names[0]] = str(buf[pos : pos + length], "utf-8")
                except UnicodeDecodeError as exc:
                    raise ProtocolError(f"{self.cls.__name__}.{names[0]} is not UTF-8") from exc
                pos += length
            elif kind == "record":
                values[names[0]], pos = arg.decode_from(buf, pos)
            else:
                if pos + 4 > end:
                    raise ProtocolError(f"{self.cls.__name__}.{names[0]} is truncated")
                (count,) = _U32.unpack_from(buf, pos)
                pos += 4
                # Refuse counts the remaining bytes cannot hold before building anything.
                if count > MAX_ITEMS or count * arg.min_size > end - pos:
                    raise ProtocolError(f"{self.cls.__name__}.{names[0]} has a bad count")
                items = []
                for _ in range(count):
                    item, pos = arg.decode_from(buf, pos)
                    items.append(item)
                values[names[0]] = tuple(items)
        return self.cls(**values), pos


_layouts: dict[type, Layout] = {}


def layout_of(cls: type) -> Layout:
    """The (cached) layout of a wire dataclass."""
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
