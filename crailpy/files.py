"""File objects: a writer that streams blocks to datanodes, readers that fetch them back.

Both move bytes between the caller's buffer and the datanodes without copying
large payloads: a write is cut at block boundaries into memoryview slices, a
read lands in slices of the caller's buffer. Several block transfers stay in
flight at once (`client.inflight`), across datanodes.

A transfer refused as STALE is tried once more with a fresh location: the key
of a block's region changes when other blocks in it are freed (docs/rdma.md),
and the file's own blocks are still there under the new key. A second refusal
means the block is lost. Over RDMA one refused key fails every transfer on its
queue pair: those are tried again without counting.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
from typing import TYPE_CHECKING, Any, Iterator

from crailpy.errors import BlockLost, Displaced, InvalidArgument, NoSpace, Stale, WrongType
from crailpy.protocol import messages as m

if TYPE_CHECKING:
    from crailpy.client import Store
    from crailpy.transports import Bound, Endpoint

MAX_TRIES = 16  # attempts of one block transfer refused as STALE (see `_result`)


def as_bytes_view(buf: Any) -> memoryview:
    """A flat byte view of any buffer (bytes, bytearray, memoryview, numpy array)."""
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise InvalidArgument("buffer must be contiguous")
        view = view.cast("B")
    return view


class _Window:
    """Transfers in flight, at most `limit`; waiting on the oldest makes room."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: collections.deque = collections.deque()

    def add(self, transfer: Any, check: Any = None, retry: Any = None) -> None:
        """`retry(refusal)`: the same transfer again, with a fresh location, if this one is STALE."""
        self._pending.append((transfer, check, retry))
        while len(self._pending) > self.limit:
            self._finish_one()

    def drain(self) -> None:
        while self._pending:
            self._finish_one()

    @contextlib.contextmanager
    def starting(self) -> Iterator[None]:
        """Around a loop that starts transfers: if starting one fails (a datanode cannot be
        reached), those already in flight are waited out before the error goes on."""
        try:
            yield
        except BaseException:
            self._settle()
            raise

    @property
    def idle(self) -> bool:
        return not self._pending

    def _finish_one(self) -> None:
        transfer, check, retry = self._pending.popleft()
        try:
            value = _finished(transfer, retry)
            if check is not None:
                check(value)
        except BaseException:
            self._settle()
            raise

    def _settle(self) -> None:
        """After a failure, wait out the other transfers: none may land in a buffer later,
        when its owner has moved on."""
        while self._pending:
            transfer, _, _ = self._pending.popleft()
            try:
                transfer.result()
            except BaseException:
                pass


def _finished(transfer: Any, retry: Any) -> Any:
    """`_result`, where a refusal that stands means the block is lost."""
    try:
        return _result(transfer, retry)
    except Stale as exc:
        raise BlockLost(str(exc)) from None


class _Refused:
    """A transfer refused already (an endpoint's `read_now` or `write_now` raised STALE),
    to be tried again by `_finished` as a transfer in a window would be."""

    def __init__(self, refusal: Stale) -> None:
        self.refusal = refusal

    def result(self) -> Any:
        raise self.refusal


def _result(transfer: Any, retry: Any) -> Any:
    """The transfer's result, tried again while it is refused as STALE, up to `MAX_TRIES`
    in all. `retry(refusal)` looks the block up again and raises the refusal itself when
    the namenode names the very location just refused: then the bytes are gone. A fresh
    key may be retired again before the retry is served (freeing churns a key region's
    key), so a valid block is never given up on after one refusal only."""
    for _ in range(MAX_TRIES - 1):
        try:
            return transfer.result()
        except Stale as exc:
            if retry is None:
                raise
            transfer = retry(exc)
    return transfer.result()


class _Retry:
    """Sends one block transfer again after a STALE refusal, at the location `locate(used)`
    gives. Each attempt compares with the location it last used, not the cache, which
    other transfers' retries refresh too. RDMA's displaced transfers (refused under
    another transfer's key) go again to the same location; any other refusal at the
    location the namenode names again is final."""

    def __init__(self, used: tuple, locate: Any, send: Any) -> None:
        self.used, self.locate, self.send = used, locate, send

    def __call__(self, refusal: Stale) -> Any:
        fresh = self.locate(self.used)
        if fresh == self.used and not isinstance(refusal, Displaced):
            raise refusal
        self.used = fresh
        return self.send(*fresh)


class Writer(io.BufferedIOBase):
    """Writes a new file; nothing is visible to readers until `close()` commits it.

    Leaving a `with` block on an exception aborts instead: the file never appears.
    A large `write` returns once its bytes are stored: until then its transfers
    read the caller's buffer (RDMA), or may have to send it again (a refused key).
    Small writes are gathered in a buffer of the writer's own and stay in flight.
    A file without blocks yet gathers up to a whole block: if it ends within it,
    it gets just the chunk its bytes need (a whole block cut down at commit would
    leave fragments, docs/design.md). Until then a writer holds up to a block of
    memory; one created with `exact` or a `size_hint` of a block or more does not.
    """

    def __init__(self, store: "Store", path: str, created: m.Created,
                 window: "_Window | None" = None, limit: int | None = None) -> None:
        self._store = store
        self._limit = limit  # an exact file's most bytes
        self.path = path
        self._info = created.info
        self._token = created.token
        self._bs = created.info.block_size
        self._blocks: list[tuple[m.DatanodeInfo, m.Block]] = []
        self._add_blocks(created.datanodes, created.blocks)
        self._pos = 0
        self._buf = bytearray()
        self._window = window or _Window(store.config.client.inflight)
        self._done = False
        self._failed: BaseException | None = None  # a transfer failed: the file cannot commit
        self._written: dict[int, Endpoint] = {}  # endpoints written through, to `_confirm`

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos + len(self._buf)

    def write(self, data: Any) -> int:
        if self._done:
            raise ValueError("write to a closed file")
        view = as_bytes_view(data)
        if self._limit is not None and self.tell() + len(view) > self._limit:
            raise InvalidArgument(f"{self.path} was created for at most {self._limit} bytes")
        limit = self._store.config.client.buffer_size
        if not self._blocks:  # the file's end may come within its first block
            limit = max(limit, self._bs)
        if len(self._buf) + len(view) <= limit:
            self._buf += view  # small writes are gathered; large ones go out as they are
            return len(view)
        with self._failing():
            self._flush_buffer()
            self._send(view, now=True)
            self._window.drain()  # the caller may change `data` once we return
        return len(view)

    def flush(self) -> None:
        """Send what is buffered and wait until every datanode has it."""
        if not self._done:
            with self._failing():
                self._flush_buffer(now=True)
                self._window.drain()
                self._confirm()

    def close(self) -> None:
        if self._done:
            return
        try:
            if self._failed is not None:
                raise self._failed
            self._flush_buffer(final=True, now=True)
            self._window.drain()
            self._confirm()
            info = self._store._call(m.Commit(self._info.id, self._token, self._pos))
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._info = info
        super().close()

    def abort(self) -> None:
        """Give the file up: its blocks are freed and it never becomes visible."""
        if self._done:
            return
        self._done = True
        try:
            self._store._call(m.Abort(self._info.id, self._token))
        except Exception:
            pass  # the namenode drops our session's files anyway when we disconnect
        super().close()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # io.IOBase would close(), and so commit, a writer that was only dropped.
        if getattr(self, "_done", True):
            return
        if self._store._session_open():
            self.abort()
        else:  # its namenode connection is gone, and the namenode dropped the file with it
            self._done = True

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Remember a failed transfer: the bytes it carried are missing, so no commit."""
        try:
            yield
        except BaseException as exc:
            self._failed = self._failed or exc
            raise

    def _flush_buffer(self, final: bool = False, now: bool = False) -> None:
        if self._buf:
            buf, self._buf = self._buf, bytearray()
            self._send(memoryview(buf), final, now)

    def _send(self, view: memoryview, final: bool = False, now: bool = False) -> None:
        """Send `view` at the current position; `final`: it ends the file; `now`: the caller
        waits for it next, so a lone transfer into one block goes the transport's quickest
        way (`write_now`)."""
        done = 0
        with self._window.starting():
            while done < len(view):
                index, offset = divmod(self._pos, self._bs)
                while index >= len(self._blocks):  # the namenode may give fewer than asked
                    if final:
                        self._allocate_end(self._pos + len(view) - done)
                    else:
                        self._allocate(len(view) - done)
                datanode, block = self._blocks[index]
                chunk = view[done : done + min(self._bs - offset, len(view) - done)]
                retry = _Retry((datanode, block), functools.partial(self._relocate, index),
                               functools.partial(self._write_block, index, offset, chunk))
                if now and len(chunk) == len(view) and self._window.idle:
                    try:
                        endpoint = self._endpoint(datanode, index)
                        endpoint.write_now(block, offset, chunk, placed=final)
                        if final:  # our WRITEs there, all done before it, are placed with it
                            del self._written[id(endpoint)]
                    except Stale as exc:
                        _finished(_Refused(exc), retry)
                else:
                    self._window.add(self._write_block(index, offset, chunk, datanode, block),
                                     None, retry)
                done += len(chunk)
                self._pos += len(chunk)

    def _relocate(self, index: int, used: tuple) -> tuple:
        """Block `index` was refused as STALE: look up its key (and the next blocks') again."""
        count = min(len(self._blocks) - index, self._store.config.client.lookup_blocks)
        reply = self._store._call(m.GetBlocks(self._info.id, index, count, self._token))
        fresh = _located(reply.datanodes, reply.blocks)
        self._blocks[reply.first : reply.first + len(fresh)] = fresh
        return self._blocks[index]

    def _write_block(self, index: int, offset: int, chunk: memoryview, datanode: m.DatanodeInfo,
                     block: m.Block) -> Any:
        return self._endpoint(datanode, index).write(block, offset, chunk)

    def _endpoint(self, datanode: m.DatanodeInfo, index: int) -> Endpoint:
        """The endpoint that writes block `index`, remembered for `_confirm`."""
        endpoint = self._store._endpoint(datanode, self.path, index)
        self._written[id(endpoint)] = endpoint
        return endpoint

    def _confirm(self) -> None:
        """Every byte written is placed: over RDMA a WRITE is done when it is
        acknowledged, and each endpoint confirms the placement of its WRITEs at once."""
        written, self._written = self._written, {}
        for endpoint in written.values():
            endpoint.confirm()

    def _allocate(self, remaining: int) -> None:
        """Ask for the blocks this write needs, and ahead of need as many as the file has
        (up to `alloc_ahead`): a file that stays small leaves few blocks to free."""
        ahead = min(self._store.config.client.alloc_ahead, len(self._blocks))
        want = max(ahead, -(-remaining // self._bs))
        reply = self._store._allocating(m.AllocBlocks(self._info.id, self._token, min(want, 4096), 0))
        self._add_blocks(reply.datanodes, reply.blocks)

    def _allocate_end(self, size: int) -> None:
        """The file ends at `size`: ask for whole blocks up to its last, and for the last
        only the chunk its bytes need."""
        whole, tail = divmod(size, self._bs)
        count = min(whole - len(self._blocks), 4096)
        if count < whole - len(self._blocks):
            tail = 0  # more than one reply's worth: the tail comes with a later one
        reply = self._store._allocating(m.AllocBlocks(self._info.id, self._token, count, tail))
        self._add_blocks(reply.datanodes, reply.blocks)

    def _add_blocks(self, datanodes: tuple, blocks: tuple) -> None:
        self._blocks.extend(_located(datanodes, blocks))


def held_inline(located: m.Located) -> bool:
    """Whether a LOOKUP brought the file's bytes: the namenode holds them (PUT)."""
    return len(located.data) == located.info.size and not located.blocks


class Reader(io.BufferedIOBase):
    """Reads one committed file (or multifile part): read, readinto, seek, tell.

    `located`: the LOOKUP of the file, with its first block locations, or with its
    bytes if the namenode holds them (`inline`); a multifile part's has its `info` only.
    """

    def __init__(self, store: "Store", path: str, located: m.Located) -> None:
        self._store = store
        self.path = path
        self.info = located.info
        self.size = located.info.size
        self.inline: bytes | None = located.data if held_inline(located) else None
        self._bs = located.info.block_size
        self._pos = 0
        self._locations: dict[int, tuple[m.DatanodeInfo, m.Block]] = {}
        self._bound: dict[int, Bound] = {}  # blocks read by `pread` at once, bound to endpoints
        self._remember(0, located.datanodes, located.blocks)
        self._ahead = bytearray()  # read-ahead for small reads
        self._ahead_at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}
        if whence not in bases:
            raise InvalidArgument(f"whence must be SEEK_SET, SEEK_CUR or SEEK_END, not {whence}")
        base = bases[whence]
        if base + offset < 0:
            raise InvalidArgument(f"cannot seek to {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        remaining = max(self.size - self._pos, 0)
        n = remaining if size is None or size < 0 else min(size, remaining)
        out = bytearray(n)
        self.readinto(out)
        return bytes(out)

    read1 = read

    def readinto(self, buf: Any) -> int:
        view = as_bytes_view(buf)
        n = min(len(view), max(self.size - self._pos, 0))
        if n == 0:
            return 0
        if n < self._store.config.client.buffer_size and self.inline is None:
            self._small_read(view[:n])
        else:
            self.pread(view[:n], self._pos)
        self._pos += n
        return n

    def _small_read(self, dest: memoryview) -> None:
        start = self._pos - self._ahead_at
        if not (0 <= start and start + len(dest) <= len(self._ahead)):
            length = min(self._store.config.client.buffer_size, self.size - self._pos)
            self._ahead = bytearray(length)
            self._ahead_at = self._pos
            self.pread(memoryview(self._ahead), self._pos)
            start = 0
        dest[:] = memoryview(self._ahead)[start : start + len(dest)]

    def pread(self, dest: memoryview, position: int, window: "_Window | None" = None) -> None:
        """Fill `dest` from `position`, every block transfer in flight at once (up to the window).

        With a `window` shared by several readers the transfers join it and the
        caller drains it; otherwise this returns once `dest` is full.
        """
        if self.inline is not None:
            dest[:] = self.inline[position : position + len(dest)]
            return
        index, offset = divmod(position, self._bs)
        if window is None and 0 < len(dest) <= self._bs - offset:  # one block: at once
            bound = self._bound.get(index)
            try:
                received = bound.read_now(offset, dest) if bound is not None else None
                if received is None:
                    received = self._read_now(index, offset, dest)
            except Stale as exc:
                self._bound.pop(index, None)
                received = _finished(_Refused(exc), _Retry(
                    self._location(index), functools.partial(self._relocate, index),
                    functools.partial(self._fetch, index, offset, dest)))
            if received != len(dest):
                _check_length(len(dest), self.path, received)
            return
        shared = window is not None
        window = window or _Window(self._store.config.client.inflight)
        done = 0
        with window.starting():
            while done < len(dest):
                index, offset = divmod(position + done, self._bs)
                datanode, block = self._location(index)
                chunk = dest[done : done + min(self._bs - offset, len(dest) - done)]
                window.add(self._fetch(index, offset, chunk, datanode, block),
                           functools.partial(_check_length, len(chunk), self.path),
                           _Retry((datanode, block), functools.partial(self._relocate, index),
                                  functools.partial(self._fetch, index, offset, chunk)))
                done += len(chunk)
        if not shared:
            window.drain()

    def _read_now(self, index: int, offset: int, dest: memoryview) -> int:
        """`pread`'s read within one block without a live bound block: bind it, through
        a live endpoint, and read through it, or the general way if it cannot now."""
        datanode, block = self._location(index)
        endpoint = self._store._endpoint(datanode, self.path, index)
        bound = self._bound[index] = endpoint.bind(block)
        received = bound.read_now(offset, dest)
        return endpoint.read(block, offset, dest).result() if received is None else received

    def _relocate(self, index: int, used: tuple) -> tuple:
        """Block `index` was refused as STALE at `used`: look it (and those after it) up
        again, unless another transfer's retry already has."""
        if self._locations.get(index) == used:
            del self._locations[index]
            self._bound.pop(index, None)
        return self._location(index)

    def _fetch(self, index: int, offset: int, chunk: memoryview, datanode: m.DatanodeInfo,
               block: m.Block) -> Any:
        return self._store._endpoint(datanode, self.path, index).read(block, offset, chunk)

    def _location(self, index: int) -> tuple[m.DatanodeInfo, m.Block]:
        location = self._locations.get(index)
        if location is None:
            count = self._store.config.client.lookup_blocks
            reply = self._store._call(m.GetBlocks(self.info.id, index, count, 0))
            self._remember(reply.first, reply.datanodes, reply.blocks)
            location = self._locations.get(index)
            if location is None:
                raise BlockLost(f"{self.path}: block {index} is not known to the namenode")
        return location

    def _remember(self, first: int, datanodes: tuple, blocks: tuple) -> None:
        for i, location in enumerate(_located(datanodes, blocks)):
            self._locations[first + i] = location
            self._bound.pop(first + i, None)


def _located(datanodes: tuple, blocks: tuple) -> list[tuple[m.DatanodeInfo, m.Block]]:
    """Each block of a reply with the DatanodeInfo of the datanode holding it."""
    nodes = {d.id: d for d in datanodes}
    return [(nodes[b.datanode], b) for b in blocks]


def _check_length(length: int, path: str, received: int) -> None:
    if received != length:
        raise BlockLost(f"{path}: a datanode returned {received} bytes for {length}")


class MultifileReader(io.BufferedIOBase):
    """Streams every part of a multifile that was committed when it was opened, in commit order."""

    def __init__(self, store: "Store", path: str, info: m.NodeInfo, first_parts: tuple) -> None:
        self._store = store
        self.path = path
        self._block_size = info.block_size
        self.size = info.size
        self.parts = self._snapshot(info, first_parts)
        self._index = 0
        self._current: Reader | None = None

    def _snapshot(self, info: m.NodeInfo, page: tuple) -> tuple[m.Part, ...]:
        """The parts committed by the lookup: the prefix whose sizes add up to its size.

        Parts are only ever appended, so whatever was committed later comes after it.
        """
        parts: list[m.Part] = []
        total = 0
        while page:
            for part in page:
                if total >= info.size and part.size:
                    return tuple(parts)
                parts.append(part)
                total += part.size
            if total >= info.size:
                break
            page = self._store._call(m.ListParts(info.id, len(parts), 4096)).parts
        return tuple(parts)

    def readable(self) -> bool:
        return True

    def part_readers(self) -> Iterator[Reader]:
        """One reader per part, for callers that want the part boundaries."""
        for i, part in enumerate(self.parts):
            yield self._part_reader(i, part)

    def _part_reader(self, i: int, part: m.Part) -> Reader:
        info = m.NodeInfo(part.id, m.NodeType.FILE, 0, 0, 1, self._block_size, part.size, 0)
        return Reader(self._store, f"{self.path} (part {i})", m.Located(info, (), (), (), b""))

    def readinto(self, buf: Any) -> int:
        view = as_bytes_view(buf)
        total = 0
        while total < len(view) and self._index < len(self.parts):
            if self._current is None:
                self._current = self._part_reader(self._index, self.parts[self._index])
            got = self._current.readinto(view[total:])
            total += got
            if got == 0 or self._current.tell() >= self._current.size:
                self._index += 1
                self._current = None
        return total

    def read(self, size: int | None = -1) -> bytes:
        out = bytearray(self.size if size is None or size < 0 else size)
        return bytes(out[: self.readinto(out)])

    read1 = read


def put_many(store: "Store", items: dict[str, Any], inflight: int) -> None:
    """Put many objects with every stage pipelined: the small ones' PUTs, then for the
    others (and any the namenode would not keep) creates, block writes, commits."""
    views = [(path, as_bytes_view(value)) for path, value in items.items()]
    small = [(path, view) for path, view in views if len(view) <= store.config.client.inline_max]
    if small:
        put = store.pipeline((m.Put(m.OVERWRITE, path, view) for path, view in small), inflight,
                             return_exceptions=True)
        for reply in put:
            if isinstance(reply, BaseException) and not isinstance(reply, NoSpace):
                raise reply
        kept = {path for (path, _), reply in zip(small, put) if not isinstance(reply, BaseException)}
        views = [(path, view) for path, view in views if path not in kept]
    if not views:
        return
    created = store.pipeline((m.Create(m.NodeType.FILE, m.ANY_CLASS, m.ANY_CLASS,
                                       m.OVERWRITE | m.EXACT, len(view), path)
                              for path, view in views), inflight, return_exceptions=True)
    failed = [c for c in created if isinstance(c, BaseException)]
    if failed:  # give back what the others took before saying why
        store.pipeline((m.Abort(c.info.id, c.token) for c in created
                        if not isinstance(c, BaseException)), inflight, return_exceptions=True)
        raise failed[0]
    window = _Window(inflight)
    writers = [Writer(store, path, c, window) for (path, _), c in zip(views, created)]
    try:
        for writer, (_, view) in zip(writers, views):
            writer._send(view)
        window.drain()
        store.pipeline((m.Commit(w._info.id, w._token, w.tell()) for w in writers), inflight)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for writer in writers:
        writer._done = True


def get_many(store: "Store", paths: list[str], inflight: int) -> list[bytes]:
    """Get many objects: lookups pipelined, then every block transfer in one window."""
    located = store.pipeline((m.Lookup(store.config.client.lookup_blocks, p) for p in paths),
                             inflight)
    window = _Window(inflight)
    out = []
    for path, found in zip(paths, located):
        if found.info.type != m.NodeType.FILE:
            raise WrongType(f"{path} is not a file")
        buf = bytearray(found.info.size)
        Reader(store, path, found).pread(memoryview(buf), 0, window)
        out.append(buf)
    window.drain()
    return [bytes(b) for b in out]
