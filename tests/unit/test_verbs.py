"""What registering memory with RDMA pins, checked without a device: only cffi's side."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crailpy import verbs

pytestmark = pytest.mark.skipif(verbs.ffi is None, reason="crailpy was built without its RDMA "
                                "library; scripts/test.sh installs libibverbs-dev and rdma-core")

# A datanode dropped without stop() leaves its registrations in cyclic garbage. With a cffi
# view of a memoryview among them, CPython 3.11's collector crashed the process.
IN_A_CYCLE = """
import gc, mmap
from crailpy import verbs

class Holder:
    pass

memory = mmap.mmap(-1, 1 << 16)
view = memoryview(memory)[4096:8192]
pinned, start, length = verbs._pin(view, writable=True)
start[0] = b"x"
assert memory[4096:4097] == b"x" and length == 4096, (memory[4096:4097], length)
holder = Holder()
holder.view, holder.pinned, holder.itself = view, pinned, holder
del holder, view, pinned, start
gc.collect()
print("collected")
"""


def test_a_pinned_memoryview_survives_the_cycle_collector() -> None:
    result = subprocess.run([sys.executable, "-c", IN_A_CYCLE], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout == "collected\n", result.stderr


def test_pinning_points_at_the_views_first_byte() -> None:
    data = bytearray(range(256))
    pinned, start, length = verbs._pin(memoryview(data)[16:48], writable=False)
    assert length == 32 and bytes(verbs.ffi.buffer(start, length)) == bytes(range(16, 48))
    verbs.ffi.release(pinned)


def test_a_read_only_view_is_refused_where_the_device_writes() -> None:
    with pytest.raises(BufferError):
        verbs._pin(memoryview(b"fixed"), writable=True)
