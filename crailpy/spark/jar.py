"""Build the Spark shim's jar from the Java sources shipped in this package.

No Maven: javac compiles `java/` against the jars of the pinned pyspark, and
the jar is cached under a name made from a digest of the sources, so an edited
source builds a new jar and an unchanged one is built once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from crailpy.errors import InvalidArgument

PYSPARK_VERSION = "4.3.0"
SOURCES = Path(__file__).parent / "java"


def spark_jars() -> Path:
    """The directory of the pinned pyspark's jars, which the shim compiles against."""
    try:
        import pyspark
    except ImportError:
        raise InvalidArgument(f"pyspark is not installed: pip install 'crailpy[spark]' "
                              f"(pyspark=={PYSPARK_VERSION})") from None
    if pyspark.__version__ != PYSPARK_VERSION:
        raise InvalidArgument(f"the Spark shim is built for pyspark {PYSPARK_VERSION}, "
                              f"not {pyspark.__version__}")
    return Path(pyspark.__file__).parent / "jars"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("CRAILPY_CACHE", Path(base) / "crailpy"))


def compile_java(sources: Path, classpath: list[Path], out: Path) -> None:
    """javac every .java under `sources` into `out` (Java 17, the release pyspark 4 needs)."""
    javac = shutil.which("javac")
    if javac is None:
        raise InvalidArgument("javac not found: install a JDK 17 (Debian: openjdk-17-jdk-headless)")
    files = sorted(str(p) for p in sources.rglob("*.java"))
    cp = os.pathsep.join(str(p) for p in classpath)
    done = subprocess.run([javac, "--release", "17", "-encoding", "UTF-8", "-Xlint:-options",
                           "-cp", cp, "-d", str(out), *files], capture_output=True, text=True)
    if done.returncode != 0:
        raise InvalidArgument(f"javac failed:\n{done.stdout}{done.stderr}")


def _digest() -> str:
    digest = hashlib.sha256(PYSPARK_VERSION.encode())
    for path in sorted(SOURCES.rglob("*.java")):
        digest.update(str(path.relative_to(SOURCES)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build() -> Path:
    """Return the path of the shim's jar, building it first if these sources have none yet."""
    jar = cache_dir() / f"crailpy-spark-{_digest()}.jar"
    if jar.exists():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crailpy-spark-") as work:
        classes = Path(work) / "classes"
        compile_java(SOURCES, [spark_jars() / "*"], classes)
        made = Path(work) / "shim.jar"
        subprocess.run([shutil.which("jar") or "jar", "--create", "--file", str(made), "-C",
                        str(classes), "."], check=True)
        os.replace(made, jar)  # atomic: a concurrent build leaves one whole jar
    return jar
