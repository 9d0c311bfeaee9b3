"""Resolve Maven artifacts (with their dependencies) from Maven Central, cached per version.

Resolution uses Apache Ivy, the same resolver Spark uses for
``spark.jars.packages``; its jar ships inside pyspark, so nothing else needs
installing. Each resolved set lives in ``<cache_dir>/jars/<name>/`` with a
``MANIFEST`` file written last: a set with a manifest is complete and later
runs use it without touching the network.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence
from xml.sax.saxutils import quoteattr

from framework.errors import JarResolutionError, JavaNotFoundError
from framework.log import get_logger

log = get_logger("jars")

MANIFEST = "MANIFEST"


def java_executable() -> str:
    """Path of the ``java`` binary (``$JAVA_HOME/bin/java`` first, then ``PATH``).

    Raises :class:`JavaNotFoundError` with what to install when there is none.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise JavaNotFoundError(
            "No Java runtime found (JAVA_HOME is unset or wrong and `java` is not on PATH); "
            "install Java 17 or newer, for example `apt-get install openjdk-17-jre-headless`.")
    return found


def ivy_jar() -> Path:
    """The Ivy jar shipped inside the installed pyspark."""
    import pyspark  # local import: pyspark is heavy and only needed here

    jars = sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "ivy-*.jar")))
    if not jars:
        raise JarResolutionError(
            "The installed pyspark has no jars/ivy-*.jar to resolve Maven artifacts with; "
            "reinstall pyspark 4.x (`pip install -e .`).")
    return Path(jars[-1])


def resolve(name: str, coordinates: Sequence[str], cache_dir: Path) -> list[Path]:
    """Jars of ``coordinates`` (``group:artifact:version``) and their runtime dependencies.

    Blocks while downloading on first use (progress is logged); afterwards it
    reads the cached set. Raises :class:`JarResolutionError` naming the
    artifacts and the resolver's last lines when resolution fails.
    """
    key = hashlib.sha1("\n".join(coordinates).encode()).hexdigest()[:10]
    target = Path(cache_dir) / "jars" / f"{name}-{key}"
    manifest = target / MANIFEST
    if manifest.is_file():
        jars = [target / line for line in manifest.read_text().split() if line]
        if all(j.is_file() for j in jars):
            return jars
    log.info("Resolving {} from Maven Central into {} (first run only)", ", ".join(coordinates), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        ivy_file = staging / "ivy.xml"
        ivy_file.write_text(_ivy_module(coordinates))
        cmd = [java_executable(), "-jar", str(ivy_jar()),
               "-ivy", str(ivy_file),
               "-cache", str(Path(cache_dir) / "ivy-cache"),
               "-confs", "default",
               "-retrieve", str(staging / "lib" / "[organisation]__[artifact]-[revision](-[classifier]).[ext]")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        jars = sorted((staging / "lib").glob("*.jar")) if (staging / "lib").is_dir() else []
        if proc.returncode != 0 or not jars:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise JarResolutionError(
                f"Could not resolve {', '.join(coordinates)} from Maven Central "
                f"(is the network or a Maven mirror reachable?). Resolver said:\n{tail}")
        size_mb = sum(j.stat().st_size for j in jars) / 1e6
        (staging / "lib" / MANIFEST).write_text("\n".join(j.name for j in jars) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / "lib", target)
        log.info("Resolved {} jars ({:.1f} MB) into {}", len(jars), size_mb, target)
        return [target / j.name for j in jars]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ivy_module(coordinates: Sequence[str]) -> str:
    deps = []
    for coord in coordinates:
        parts = coord.split(":")
        if len(parts) != 3:
            raise JarResolutionError(f"Maven coordinate {coord!r} is not of the form group:artifact:version.")
        org, artifact, rev = parts
        deps.append(f"    <dependency org={quoteattr(org)} name={quoteattr(artifact)} "
                    f"rev={quoteattr(rev)} conf=\"default->default\"/>")
    return ("<ivy-module version=\"2.0\">\n"
            "  <info organisation=\"pipeline-framework\" module=\"resolve\"/>\n"
            "  <configurations><conf name=\"default\"/></configurations>\n"
            "  <dependencies>\n" + "\n".join(deps) + "\n  </dependencies>\n</ivy-module>\n")
