"""cffi build of crailpy's RDMA library (API mode): `crailpy._rdma`.

setup.py builds it when the package is installed, as an optional extension:
on a machine without libibverbs and librdmacm headers the build is skipped and
crailpy runs over TCP alone.
"""

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCE = os.path.relpath(HERE)  # setuptools wants paths relative to setup.py

ffibuilder = FFI()
ffibuilder.cdef((HERE / "crail_rdma.h").read_text())
ffibuilder.set_source(
    "crailpy._rdma",
    '#include "crail_rdma.h"',
    sources=[os.path.join(SOURCE, "crail_rdma.c")],
    include_dirs=[SOURCE],
    libraries=["ibverbs", "rdmacm"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE / "build"), verbose=True)
