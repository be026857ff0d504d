"""The one thing pyproject.toml cannot say: crailpy's C libraries are optional.

The RDMA library needs libibverbs and librdmacm headers (Debian:
libibverbs-dev, librdmacm-dev); the NVMe/TCP engine needs only a C compiler.
Where one cannot be built, setuptools warns and crailpy installs without it:
without RDMA blocks move over TCP, without the engine the nvmf transport says
that it is missing.
"""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from cffi_builds import builders  # noqa: E402

extensions = [ffibuilder.distutils_extension(tmpdir="build/cffi") for ffibuilder in builders()]
for extension in extensions:
    extension.optional = True
setup(ext_modules=extensions)
