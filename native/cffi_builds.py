"""cffi builds (API mode) of crailpy's C libraries: `crailpy._rdma` and `crailpy._nvme_tcp`.

setup.py builds both when the package is installed, as optional extensions:
the RDMA library needs libibverbs and librdmacm headers, the NVMe/TCP engine
only a C compiler. `python native/cffi_builds.py` builds them by hand, with
the compiler's output. Each library's header is also its cffi declaration.
"""

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
LIBRARIES = {  # module in crailpy -> (native/<name>.c and .h, the libraries it links)
    "_rdma": ("crail_rdma", ["ibverbs", "rdmacm"]),
    "_nvme_tcp": ("nvme_tcp", []),
}


def builders(by_hand: bool = False) -> list[FFI]:
    # setuptools wants paths relative to setup.py; cffi, run by hand, compiles in another directory
    source = str(HERE) if by_hand else os.path.relpath(HERE)
    out = []
    for module, (name, libraries) in LIBRARIES.items():
        ffibuilder = FFI()
        ffibuilder.cdef((HERE / f"{name}.h").read_text())
        ffibuilder.set_source(
            f"crailpy.{module}",
            f'#include <stdint.h>\n#include "{name}.h"',
            sources=[os.path.join(source, f"{name}.c")],
            include_dirs=[source],
            libraries=libraries,
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
        out.append(ffibuilder)
    return out


if __name__ == "__main__":
    for ffibuilder in builders(by_hand=True):
        ffibuilder.compile(tmpdir=str(HERE / "build"), verbose=True)
