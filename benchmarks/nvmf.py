"""crailpy's NVMe/TCP initiator against the kernel's, on the same nvmet target, in the VM.

One namespace of Linux nvmet (a 256 MiB file in tmpfs, buffered) is read and
written sequentially in 128 KiB I/Os, MiB/s each:
- one I/O at a time: crailpy's initiator (`Controller.read`/`write` into and
  from one buffer) against the kernel's initiator through its block device
  with `dd` and O_DIRECT;
- eight I/Os in flight: crailpy's `start_read`/`start_write` with a window of
  eight, as crailpy's readers and writers keep one, against `fio` with libaio,
  O_DIRECT and an I/O depth of eight.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import time
from pathlib import Path

from crailpy.datanode_nvmf import nvmet
from crailpy.protocol import nvme_tcp
from crailpy.transports.nvme_initiator import Controller

NQN = "nqn.2026-11.io.crailpy:bench"
IO = 128 << 10
SIZE = 256 << 20
DEPTH = 8  # I/Os in flight in the second pair
PORT = nvme_tcp.PORT  # the NVMe/TCP port
ANCHORS = {1: "kernel initiator (dd, O_DIRECT)", DEPTH: f"kernel initiator (fio, libaio, depth {DEPTH})"}


def _mib_s(seconds: float) -> float:
    return round(SIZE / (1 << 20) / seconds, 1)


def _dd(*args: str) -> float:
    """MiB/s that dd reports for a 128 KiB-block copy."""
    out = subprocess.run(["dd", f"bs={IO}", f"count={SIZE // IO}", *args], capture_output=True,
                         text=True, check=True).stderr
    return _mib_s(float(re.search(r"copied, ([\d.]+) s", out).group(1)))


def _fio(device: str, write: bool) -> float:
    """MiB/s that fio reports for sequential 128 KiB I/O at DEPTH."""
    out = subprocess.run(["fio", "--name=seq", f"--filename={device}", "--rw=" + ("write" if write else "read"),
                          f"--bs={IO}", f"--iodepth={DEPTH}", "--ioengine=libaio", "--direct=1",
                          f"--size={SIZE}", "--output-format=json"],
                         capture_output=True, text=True, check=True).stdout
    job = json.loads(out)["jobs"][0]["write" if write else "read"]
    return round(job["bw_bytes"] / (1 << 20), 1)


def _kernel(device: str, write: bool, depth: int) -> float:
    if depth > 1:
        return _fio(device, write)
    if write:
        return _dd("if=/dev/zero", f"of={device}", "oflag=direct")
    return _dd(f"if={device}", "of=/dev/null", "iflag=direct")


def _ours(ctrl: Controller, write: bool, depth: int) -> float:
    ns = ctrl.namespace(1)
    buffers = [memoryview(bytearray(os.urandom(IO))) for _ in range(depth)]
    start = time.perf_counter()
    if depth == 1:
        for lba in range(0, SIZE // ns.block_size, IO // ns.block_size):
            (ctrl.write if write else ctrl.read)(ns, lba, buffers[0])
    else:
        begin = ctrl.start_write if write else ctrl.start_read
        window: collections.deque = collections.deque()
        for i, offset in enumerate(range(0, SIZE, IO)):
            if len(window) == depth:  # the oldest, whose buffer is the one to use again
                window.popleft().result()
            window.append(begin(ns, offset, buffers[i % depth]))
        while window:
            window.popleft().result()
    return _mib_s(time.perf_counter() - start)


def rows() -> list[dict]:
    image = Path("/dev/shm/crailpy-bench.img")
    with open(image, "wb") as f:
        f.truncate(SIZE)
    export = nvmet.Export(NQN, str(image), "127.0.0.1", PORT)
    figures: dict[tuple[bool, int], tuple[float, float]] = {}
    try:
        kernel = nvmet.KernelInitiator(NQN, "127.0.0.1", PORT)
        try:
            theirs = {(write, depth): _kernel(kernel.device, write, depth)
                      for depth in (1, DEPTH) for write in (True, False)}
        finally:
            kernel.disconnect()
        ctrl = Controller("127.0.0.1", PORT, NQN)
        try:
            for key in theirs:
                figures[key] = (_ours(ctrl, *key), theirs[key])
        finally:
            ctrl.close()
    finally:
        export.remove()
        image.unlink()
    return [{"measure": f"NVMe/TCP sequential {'write' if write else 'read'}, 128 KiB"
                        + (f", {depth} in flight" if depth > 1 else ""),
             "unit": "MiB_s", "crailpy": ours, "anchor": ANCHORS[depth], "anchor_value": theirs}
            for (write, depth), (ours, theirs) in sorted(figures.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
