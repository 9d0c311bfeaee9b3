"""What the local Trino runs from: a JDK new enough, and Trino's server with its Iceberg plugin, cached.

**JDK.** Trino 476 refuses to start on a Java older than 24.0.1 (its own
``TrinoSystemRequirements`` check), while Kafka and Spark here run on Java 17.
:func:`find_jdk` looks, in order, at ``PIPELINE_TRINO_JAVA_HOME``, ``JAVA_HOME``
and every JDK directory under ``/usr/lib/jvm`` and ``/opt`` (one level, and
``/opt/java/*`` as in the Temurin images), reads each one's ``release`` file and
takes the newest that is at least :data:`MIN_JAVA`.

**Distribution.** Only from Maven Central (no other download site is used):

- ``io.trino:trino-server-core:<v>`` (tar.gz, about 194 MB): the minimal server,
  without connectors;
- ``io.trino:trino-iceberg:<v>`` (zip, about 346 MB): the Iceberg connector,
  unpacked into ``plugin/iceberg`` (it carries PostgreSQL's JDBC driver, which
  the JDBC catalog needs, so nothing else is added).

The full ``trino-server`` tarball (821 MB, every connector) is not used. Each
file is checked against Maven Central's ``.sha1`` before it is unpacked. The
server is assembled in a staging directory and moved to
``<cache_dir>/trino/<version>/server`` with a ``COMPLETE`` marker written last:
a directory with the marker is whole and later runs use it without the network.
Archives are deleted once unpacked.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Iterable

from framework.errors import TrinoError
from framework.log import get_logger

log = get_logger("trino")

#: the oldest Java Trino 476 starts on (``TrinoSystemRequirements``: "Trino requires Java 24.0.1 at minimum")
MIN_JAVA = (24, 0, 1)
MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
JDK_ROOTS = (Path("/usr/lib/jvm"), Path("/opt"), Path("/opt/java"))
COMPLETE = "COMPLETE"

#: (url, file size in bytes) -> None, called while downloading
Progress = Callable[[str, int, int], None]


def parse_java_version(text: str) -> tuple[int, ...] | None:
    """``"25.0.3"``, ``"24"``, ``"17.0.16+8"``, ``"1.8.0_412"`` -> a tuple of ints (``1.8`` -> ``(8, 0, 412)``)."""
    match = re.match(r"^\s*(\d+(?:[._]\d+)*)", text.strip().strip('"'))
    if not match:
        return None
    parts = tuple(int(p) for p in re.split(r"[._]", match.group(1)))
    if parts[0] == 1 and len(parts) > 1:  # Java 8 and older: 1.8.0_412
        parts = parts[1:]
    return parts


def jdk_version(home: Path) -> tuple[int, ...] | None:
    """The Java version of the JDK (or JRE) at ``home`` from its ``release`` file, or None when it is not one."""
    java = home / "bin" / "java"
    release = home / "release"
    if not (java.is_file() and os.access(java, os.X_OK) and release.is_file()):
        return None
    try:
        text = release.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="?([^"\n]+)"?', text, re.MULTILINE)
    return parse_java_version(match.group(1)) if match else None


def _candidates(roots: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        try:
            children = sorted(root.iterdir()) if root.is_dir() else []
        except OSError:
            continue
        found.extend(c for c in children if c.is_dir() and not c.is_symlink())
    return found


def find_jdk(java_home: str = "", roots: Iterable[Path] = JDK_ROOTS,
             environ: dict[str, str] | None = None) -> tuple[Path, tuple[int, ...]]:
    """``(JDK home, version)`` of the JDK the local Trino runs on: the newest that is at least :data:`MIN_JAVA`.

    ``java_home`` (``PIPELINE_TRINO_JAVA_HOME``), when given, is the only one
    considered. Raises :class:`TrinoError` (one sentence naming what was found
    and the remedy) when there is none.
    """
    need = ".".join(map(str, MIN_JAVA))
    if java_home:
        home = Path(java_home).expanduser()
        version = jdk_version(home)
        if version is None:
            raise TrinoError(f"PIPELINE_TRINO_JAVA_HOME={java_home} is not a JDK (no bin/java and release file); "
                             f"point it at a Java {need}+ JDK such as /usr/lib/jvm/temurin-25-jdk-amd64.")
        if version < MIN_JAVA:
            raise TrinoError(f"PIPELINE_TRINO_JAVA_HOME={java_home} is Java {'.'.join(map(str, version))}, but "
                             f"Trino needs Java {need} or newer; point it at a newer JDK (e.g. Temurin 25).")
        return home, version
    environ = dict(os.environ) if environ is None else environ
    homes = ([Path(environ["JAVA_HOME"])] if environ.get("JAVA_HOME") else []) + _candidates(roots)
    versions = [(v, h) for h in homes if (v := jdk_version(h)) is not None]
    usable = sorted((vh for vh in versions if vh[0] >= MIN_JAVA), key=lambda vh: vh[0], reverse=True)
    if usable:
        version, home = usable[0]
        return home, version
    seen = ", ".join(f"{h} (Java {'.'.join(map(str, v))})" for v, h in versions) or "none"
    raise TrinoError(f"Trino needs a Java {need}+ JDK and none was found in JAVA_HOME, /usr/lib/jvm or /opt "
                     f"(found: {seen}); install one, such as Eclipse Temurin 25, and set "
                     "PIPELINE_TRINO_JAVA_HOME to its directory.")


def artifact_urls(version: str) -> dict[str, str]:
    """Maven Central URLs of the server core tarball and the Iceberg plugin zip of ``version``."""
    return {"server": f"{MAVEN_CENTRAL}/io/trino/trino-server-core/{version}/trino-server-core-{version}.tar.gz",
            "iceberg": f"{MAVEN_CENTRAL}/io/trino/trino-iceberg/{version}/trino-iceberg-{version}.zip"}


def server_home(cache_dir: Path, version: str) -> Path:
    """Where the assembled server of ``version`` lives (``bin/``, ``lib/``, ``plugin/iceberg``)."""
    return Path(cache_dir) / "trino" / version / "server"


def ensure_server(cache_dir: Path, version: str, progress: Progress | None = None) -> Path:
    """The server home of ``version``, downloaded, checked and assembled on first use.

    Blocks while downloading (about 540 MB; ``progress`` or the log shows how
    far). Raises :class:`TrinoError` naming the URL when a download fails or
    its SHA-1 differs from Maven Central's.
    """
    home = server_home(cache_dir, version)
    if (home / COMPLETE).is_file():
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".server-", dir=home.parent))
    try:
        urls = artifact_urls(version)
        log.info("Downloading Trino {} (server core and Iceberg plugin, about 540 MB) from Maven Central into {}",
                 version, home)
        server_tgz = download(urls["server"], staging / Path(urls["server"]).name, progress)
        with tarfile.open(server_tgz) as tar:
            tar.extractall(staging, filter="tar")
        server_tgz.unlink()
        unpacked = staging / f"trino-server-core-{version}"
        if not (unpacked / "lib").is_dir():
            raise TrinoError(f"{urls['server']} did not unpack to trino-server-core-{version}/lib; "
                             "delete the cache directory and retry.")
        plugin_zip = download(urls["iceberg"], staging / Path(urls["iceberg"]).name, progress)
        with zipfile.ZipFile(plugin_zip) as zf:
            zf.extractall(staging / "plugin-unpacked")
        plugin_zip.unlink()
        plugin_dirs = [d for d in (staging / "plugin-unpacked").iterdir() if d.is_dir()]
        if len(plugin_dirs) != 1:
            raise TrinoError(f"{urls['iceberg']} did not unpack to one directory; delete the cache and retry.")
        os.replace(plugin_dirs[0], unpacked / "plugin" / "iceberg")
        (unpacked / COMPLETE).write_text(f"trino-server-core {version} + trino-iceberg {version}\n")
        if home.exists():
            shutil.rmtree(home)
        os.replace(unpacked, home)
        log.info("Trino {} ready in {}", version, home)
        return home
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(url: str, target: Path, progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target`` and check it against ``url + '.sha1'``; return ``target``."""
    try:
        with urllib.request.urlopen(url + ".sha1", timeout=timeout) as response:
            expected = response.read().decode().split()[0].strip().lower()
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            digest, done = hashlib.sha1(), 0
            report = progress or _log_progress
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                report(url, done, total)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TrinoError(f"Downloading {url} failed ({exc}); check the network or a proxy for Maven Central "
                         "and retry (finished files are cached).") from None
    if digest.hexdigest() != expected:
        target.unlink(missing_ok=True)
        raise TrinoError(f"{url} does not match its Maven Central SHA-1 ({digest.hexdigest()} != {expected}); "
                         "retry the download (a proxy may have altered it).")
    return target


_last_report: dict[str, float] = {}


def _log_progress(url: str, done: int, total: int) -> None:
    """Progress on stderr: at most one line every 2 s per file, and a last one at 100 %."""
    now = time.monotonic()
    finished = total and done >= total
    if not finished and now - _last_report.get(url, 0.0) < 2.0:
        return
    _last_report[url] = now
    name = url.rsplit("/", 1)[-1]
    share = f"{100 * done / total:5.1f} % of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
    print(f"  {name}: {share}", file=sys.stderr, flush=True)
