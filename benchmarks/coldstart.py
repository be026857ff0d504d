"""Cold start: a new process imports the client, connects and reads one 1 KiB object;
the whole process's wall time, crailpy against redis-py.

pip compiles an installed package to bytecode; an editable install (as the test
venv has) does not, and with PYTHONDONTWRITEBYTECODE set (as on these machines)
every import would compile crailpy from source again, which costs more than the
import itself. So crailpy is compiled first, as `pip install` would have done, and
both libraries are imported without the editable install's import hook (see `run`).
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import harness


def _wall(code: str, runs: int, path: str) -> float:
    times = []
    env = {**os.environ, "PYTHONPATH": path}
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", code], check=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(crail: harness.Crail, redis_port: int, runs: int) -> dict:
    import redis

    import crailpy

    compileall.compile_dir(Path(crailpy.__file__).parent, quiet=1)
    with crailpy.connect(crail.address) as store:
        store.put("/cold", bytes(1024))
    redis.Redis(port=redis_port).set("cold", bytes(1024))
    crail_code = (f"import crailpy\nwith crailpy.connect('{crail.address}') as s:\n"
                  f"    assert len(s.get('/cold')) == 1024")
    redis_code = (f"import redis\nassert len(redis.Redis(port={redis_port}).get('cold')) == 1024")
    # Both are imported from directories on sys.path, as installed wheels are: `-S` leaves
    # out site's .pth hooks, where the test venv's editable install of crailpy puts a finder
    # that costs every process of the venv about 10 ms, whatever it imports.
    path = os.pathsep.join(dict.fromkeys(str(Path(module.__file__).parents[1])
                                         for module in (crailpy, redis)))
    bare = _wall("pass", runs, path)
    crail_s, redis_s = _wall(crail_code, runs, path), _wall(redis_code, runs, path)
    return {"bare interpreter ms": round(bare * 1e3, 1), "crailpy ms": round(crail_s * 1e3, 1),
            "redis-py ms": round(redis_s * 1e3, 1), "vs redis": round(crail_s / redis_s, 2)}
