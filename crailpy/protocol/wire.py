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

import itertools
import struct
from typing import Annotated, Any, Callable, NamedTuple

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
    """The compiled wire layout of one message (a named tuple).

    The steps become the source of two functions, `encode` and `decode_from`, compiled
    once per class: each field is a local variable and each step a line or two, with no
    loop over steps and no lookups at run time. Interpreting the steps for every message
    cost a 1 KiB get about 7 us of its 54 (docs/benchmarks.md).
    """

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
        self.encode: Callable[[Any], bytes]
        self.decode_from: Callable[[memoryview, int, int], tuple[Any, int]]
        if self.struct is not None:
            self.encode, self.decode_from = _fixed(self.cls, self.struct)

    def __getattr__(self, name: str) -> Any:
        """`encode` and `decode_from`, compiled when first used: a short-lived client then
        compiles only the few layouts it meets (about 0.2 ms each)."""
        if name not in ("encode", "decode_from"):
            raise AttributeError(name)
        self.encode, self.decode_from = _compile(self)
        return getattr(self, name)

    def name(self, index: int) -> str:
        return f"{self.cls.__name__}.{self.cls._fields[index]}"


def _fixed(cls: type, s: struct.Struct) -> tuple[Callable, Callable]:
    """The encoder and decoder of a layout of fixed-size fields only: one pack, one unpack."""
    pack, unpack_from, size, new = s.pack, s.unpack_from, s.size, tuple.__new__

    def encode(obj: Any) -> bytes:
        return pack(*obj)

    def decode_from(buf: memoryview, pos: int, end: int) -> tuple[Any, int]:
        if pos + size > end:
            raise ProtocolError(f"{cls.__name__} is truncated")
        return new(cls, unpack_from(buf, pos)), pos + size

    return encode, decode_from


def _compile(layout: Layout) -> tuple[Callable, Callable]:
    """The source of `layout`'s encoder and decoder (with a field of variable size), compiled."""
    names = ", ".join(f"v{i}" for i in range(len(layout.cls._fields)))
    env: dict[str, Any] = {"_new": tuple.__new__, "cls": layout.cls, "layout": layout,
                           "_U16": _U16, "_U32": _U32, "_starmap": itertools.starmap,
                           "MAX_STR": MAX_STR, "MAX_ITEMS": MAX_ITEMS, "_refuse": _refuse,
                           "_bad": _bad}
    enc: list[str] = []  # checks before encoding
    parts: list[str] = []  # the expressions whose bytes, joined, are the encoding
    dec: list[str] = []
    for k, (kind, arg, fields) in enumerate(layout.steps):
        i = fields[0]
        env[f"S{k}"] = arg
        if kind == "fixed":
            vs = ", ".join(f"v{j}" for j in fields)
            parts.append(f"S{k}.pack({vs})")
            dec += [f"    if pos + {arg.size} > end: _bad(cls.__name__ + ' is truncated')",
                    f"    {vs}, = S{k}.unpack_from(buf, pos)",
                    f"    pos += {arg.size}"]
            continue
        if kind == "record":
            parts.append(f"S{k}.encode(v{i})")
            dec.append(f"    v{i}, pos = S{k}.decode_from(buf, pos, end)")
            continue
        what = layout.name(i)
        prefix = f"    if pos + {2 if kind == 'str' else 4} > end: _bad('{what} is truncated')"
        if kind == "str":
            enc += [f"    r{i} = v{i}.encode('utf-8')",
                    f"    if len(r{i}) > MAX_STR: _refuse(layout, {i}, len(r{i}), 'bytes', MAX_STR)"]
            parts += [f"_U16.pack(len(r{i}))", f"r{i}"]
            dec += [prefix,
                    "    n, = _U16.unpack_from(buf, pos)",
                    "    pos += 2",
                    f"    if n > MAX_STR or pos + n > end: _bad('{what} has a bad length')",
                    "    try:",
                    f"        v{i} = str(buf[pos:pos + n], 'utf-8')",
                    "    except UnicodeDecodeError as exc:",
                    f"        _bad('{what} is not UTF-8', exc)",
                    "    pos += n"]
        elif kind == "bytes":
            parts += [f"_U32.pack(len(v{i}))", f"v{i}"]
            dec += [prefix,
                    "    n, = _U32.unpack_from(buf, pos)",
                    "    pos += 4",
                    f"    if pos + n > end: _bad('{what} has a bad length')",
                    f"    v{i} = buf[pos:pos + n].tobytes()",
                    "    pos += n"]
        else:  # a list; an item's layout compiles when an item first comes
            enc.append(f"    if len(v{i}) > MAX_ITEMS: "
                       f"_refuse(layout, {i}, len(v{i}), 'items', MAX_ITEMS)")
            dec += [prefix,
                    "    n, = _U32.unpack_from(buf, pos)",
                    "    pos += 4",
                    # Refuse counts the remaining bytes cannot hold before building anything.
                    f"    if n > MAX_ITEMS or n * {arg.min_size} > end - pos: "
                    f"_bad('{what} has a bad count')"]
            if arg.struct is not None:  # fixed items are packed and unpacked in place
                env[f"R{k}"], env[f"P{k}"], env[f"U{k}"] = \
                    arg.cls, arg.struct.pack, arg.struct.unpack_from
                size = arg.struct.size
                parts += [f"_U32.pack(len(v{i}))",
                          f"b''.join(_starmap(P{k}, v{i})) if v{i} else b''"]
                dec += [f"    v{i} = tuple([_new(R{k}, U{k}(buf, pos + j * {size})) "
                        "for j in range(n)]) if n else ()",
                        f"    pos += n * {size}"]
            else:
                parts += [f"_U32.pack(len(v{i}))",
                          f"b''.join(map(S{k}.encode, v{i})) if v{i} else b''"]
                dec += ["    items = []",
                        "    for _ in range(n):",
                        f"        x, pos = S{k}.decode_from(buf, pos, end)",
                        "        items.append(x)",
                        f"    v{i} = tuple(items)"]
    source = ["def encode(obj):", f"    {names}, = obj", *enc,
              f"    return b''.join(({', '.join(parts)},))",
              "def decode_from(buf, pos, end):", *dec,
              f"    return _new(cls, ({names},)), pos"]
    exec(compile("\n".join(source), f"<wire layout of {layout.cls.__name__}>", "exec"), env)
    return env["encode"], env["decode_from"]


def _refuse(layout: Layout, index: int, count: int, unit: str, limit: int) -> None:
    raise ValueError(f"{layout.name(index)} has {count} {unit}; the limit is {limit}")


def _bad(message: str, cause: BaseException | None = None) -> None:
    raise ProtocolError(message) from cause


_layouts: dict[type, Layout] = {}


def layout_of(cls: type) -> Layout:
    """The (cached) layout of a message or record class."""
    layout = _layouts.get(cls)
    if layout is None:
        layout = _layouts[cls] = Layout(cls)
    return layout


def encode(obj: Any) -> bytes:
    """The wire bytes of one record."""
    layout = _layouts.get(type(obj)) or layout_of(type(obj))
    return layout.encode(obj)


def decode(cls: type, buf: bytes | bytearray | memoryview) -> Any:
    """One record of type `cls` that must fill `buf` exactly."""
    view = memoryview(buf)
    end = len(view)
    obj, pos = (_layouts.get(cls) or layout_of(cls)).decode_from(view, 0, end)
    if pos != end:
        raise ProtocolError(f"{cls.__name__} has {end - pos} trailing bytes")
    return obj
