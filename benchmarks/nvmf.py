"""crailpy's NVMe/TCP initiator against the kernel's, on the same nvmet target, in the VM.

One namespace of Linux nvmet (a 256 MiB file in tmpfs, buffered) is read and
written sequentially in 128 KiB I/Os, one at a time: by crailpy's initiator
(`Controller.read`/`write` into and from one buffer), and by the kernel's
initiator through its block device with `dd` and O_DIRECT. MiB/s each.
"""

from __future__ import annotations

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
PORT = nvme_tcp.PORT  # the NVMe/TCP port


def _dd(*args: str) -> float:
    """MiB/s that dd reports for a 128 KiB-block copy."""
    out = subprocess.run(["dd", f"bs={IO}", f"count={SIZE // IO}", *args], capture_output=True,
                         text=True, check=True).stderr
    seconds = float(re.search(r"copied, ([\d.]+) s", out).group(1))
    return round(SIZE / (1 << 20) / seconds, 1)


def _ours(ctrl: Controller, write: bool) -> float:
    ns = ctrl.namespace(1)
    buf = memoryview(bytearray(os.urandom(IO)))
    start = time.perf_counter()
    for lba in range(0, SIZE // ns.block_size, IO // ns.block_size):
        (ctrl.write if write else ctrl.read)(ns, lba, buf)
    return round(SIZE / (1 << 20) / (time.perf_counter() - start), 1)


def rows() -> list[dict]:
    image = Path("/dev/shm/crailpy-bench.img")
    with open(image, "wb") as f:
        f.truncate(SIZE)
    export = nvmet.Export(NQN, str(image), "127.0.0.1", PORT)
    try:
        kernel = nvmet.KernelInitiator(NQN, "127.0.0.1", PORT)
        try:
            kernel_write = _dd("if=/dev/zero", f"of={kernel.device}", "oflag=direct")
            kernel_read = _dd(f"if={kernel.device}", "of=/dev/null", "iflag=direct")
        finally:
            kernel.disconnect()
        ctrl = Controller("127.0.0.1", PORT, NQN)
        try:
            our_write, our_read = _ours(ctrl, True), _ours(ctrl, False)
        finally:
            ctrl.close()
    finally:
        export.remove()
        image.unlink()
    anchor = "kernel initiator (dd, O_DIRECT)"
    return [
        {"measure": "NVMe/TCP sequential read, 128 KiB", "unit": "MiB_s", "crailpy": our_read,
         "anchor": anchor, "anchor_value": kernel_read},
        {"measure": "NVMe/TCP sequential write, 128 KiB", "unit": "MiB_s", "crailpy": our_write,
         "anchor": anchor, "anchor_value": kernel_write},
    ]
