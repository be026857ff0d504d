"""The flash datanode's NVMe/TCP export, made by one of three target back ends.

Each back end exports one namespace (a file or a block device) as namespace 1
of one subsystem, on one TCP listener, and `remove()` takes down exactly what
it made, in reverse: a datanode that stops leaves the target as it found it.
Clients then read and write the namespace's LBAs with the target directly;
the datanode only registers them with the namenode and heartbeats.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from crailpy.datanode_nvmf import nvmet
from crailpy.datanode_nvmf.target import Target
from crailpy.errors import CrailError, InvalidArgument
from crailpy.protocol import nvme_tcp

BACKENDS = ("builtin", "nvmet", "spdk")


class BackingStore:
    """The namespace's bytes: a block device as it is, or a file made `capacity` long.

    A file made here is deleted at the end (a restarted datanode is a new, empty
    one); a device or a file that was there before is left alone.
    """

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        self.device = mode is not None and stat.S_ISBLK(mode)
        self._made = mode is None
        if self.device:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
            self.capacity = min(capacity, size)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, capacity)
            finally:
                os.close(fd)
            self.capacity = capacity

    def remove(self) -> None:
        if self._made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class Export:
    """A namespace exported as subsystem `nqn` on a TCP `port`; `remove` undoes it."""

    def __init__(self, backing: BackingStore, port: int, nqn: str) -> None:
        self.backing, self.port, self.nqn = backing, port, nqn
        self.capacity = backing.capacity

    def remove(self) -> None:
        """Take the export down, then the file made for it, once the target let go."""
        try:
            self._take_down()
        finally:
            self.backing.remove()

    def _take_down(self) -> None:
        raise NotImplementedError


class BuiltinExport(Export):
    """crailpy's own target (`datanode_nvmf.target`), run inside the datanode."""

    def __init__(self, backing: BackingStore, host: str, port: int, nqn: str) -> None:
        self._target = Target(host, port, nqn, backing.path, backing.capacity).start()
        super().__init__(backing, self._target.port, nqn)

    def _take_down(self) -> None:
        self._target.stop()


class NvmetExport(Export):
    """The Linux kernel's target, configured through configfs."""

    def __init__(self, backing: BackingStore, host: str, port: int, nqn: str) -> None:
        super().__init__(backing, port, nqn)
        # A device goes straight to the disk; a file through the page cache, since
        # nvmet opens it with O_DIRECT otherwise, which tmpfs refuses.
        self._export = nvmet.Export(nqn, backing.path, host, port, buffered=not backing.device)

    def _take_down(self) -> None:
        self._export.remove()


class SpdkExport(Export):
    """A running SPDK `nvmf_tgt`, configured through its JSON-RPC socket with SPDK's own
    client: the TCP transport if missing, an AIO bdev over the backing store, a
    subsystem, its namespace and its listener."""

    def __init__(self, backing: BackingStore, host: str, port: int, nqn: str,
                 socket_path: str) -> None:
        try:
            from spdk.rpc.client import JSONRPCClient, JSONRPCException
        except ImportError:
            raise CrailError("the spdk back end needs SPDK's Python package: pip install spdk") \
                from None
        super().__init__(backing, port, nqn)
        self._bdev = f"crailpy-{nqn.rsplit(':', 1)[-1]}"
        try:
            self._rpc = JSONRPCClient(socket_path, timeout=10.0)
        except JSONRPCException:
            raise CrailError(f"no SPDK nvmf_tgt answers on {socket_path}") from None
        self._undo = contextlib.ExitStack()
        self._undo.callback(self._rpc.close)
        with self._undo:
            if not any(t.get("trtype", "").upper() == "TCP" for t in self._call("nvmf_get_transports")):
                self._call("nvmf_create_transport", trtype="TCP")
            self._call("bdev_aio_create", filename=backing.path, name=self._bdev, block_size=4096)
            self._undo.callback(self._call, "bdev_aio_delete", name=self._bdev)
            self._call("nvmf_create_subsystem", nqn=nqn, allow_any_host=True,
                       serial_number="CRAILPY00000001", model_number="crailpy flash datanode")
            self._undo.callback(self._call, "nvmf_delete_subsystem", nqn=nqn)
            self._call("nvmf_subsystem_add_ns", nqn=nqn, namespace={"bdev_name": self._bdev, "nsid": 1})
            self._call("nvmf_subsystem_add_listener", nqn=nqn,
                       listen_address={"trtype": "tcp", "adrfam": "ipv4", "traddr": host,
                                       "trsvcid": str(port)})
            self._undo = self._undo.pop_all()

    def _call(self, method: str, **params: Any) -> Any:
        from spdk.rpc.client import JSONRPCException

        try:
            return self._rpc.call(method, params or None)
        except JSONRPCException as exc:  # its text holds the request too: keep the answer
            answer = " ".join(str(exc).split("response:")[-1].split())
            raise CrailError(f"SPDK {method}: {answer}") from None

    def _take_down(self) -> None:
        self._undo.close()


def export(backend: str, path: str, capacity: int, host: str, port: int, nqn: str,
           spdk_socket: str) -> Export:
    """Export `path` (made `capacity` long if it is not a device) through `backend`."""
    if backend not in BACKENDS:
        raise InvalidArgument(f"datanode.nvmf_backend is one of {', '.join(BACKENDS)}, "
                              f"not {backend!r}")
    if backend != "builtin":
        port = port or nvme_tcp.PORT
    backing = BackingStore(path, capacity)
    try:
        if backend == "builtin":
            return BuiltinExport(backing, host, port, nqn)
        if backend == "nvmet":
            return NvmetExport(backing, host, port, nqn)
        return SpdkExport(backing, host, port, nqn, spdk_socket)
    except BaseException:
        backing.remove()
        raise
