"""The one thing pyproject.toml cannot say: the RDMA library is optional.

It needs libibverbs and librdmacm headers (Debian: libibverbs-dev,
librdmacm-dev); where they are missing the build of that one extension fails,
setuptools warns, and crailpy installs without it (TCP only).
"""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from build_rdma import ffibuilder  # noqa: E402

extension = ffibuilder.distutils_extension(tmpdir="build/cffi")
extension.optional = True
setup(ext_modules=[extension])
