"""The seeds' Presto: a local Trino 476 server on 127.0.0.1 over the framework's Iceberg catalog.

Trino runs from the server core and Iceberg plugin of Maven Central, cached by
:mod:`framework.local.trino_dist`, on a Java 24+ JDK found there (Kafka and
Spark keep Java 17). Its state lives in ``<state_dir>/trino/``::

    etc/config.properties  etc/log.properties
    etc/catalog/<catalog>.properties   the Iceberg JDBC catalog (rewritten at each start)
    data/                  Trino's node data directory
    logs/server.log        logs/launcher.log (the JVM's stdout and stderr)
    trino.pid

The catalog ``PIPELINE_ICEBERG_CATALOG`` (``iceberg``) is Iceberg's JDBC catalog
in the same PostgreSQL database, with the same catalog name and warehouse, as
:class:`~framework.sinks.iceberg.IcebergWriter` (:mod:`framework.sinks.iceberg_catalog`),
so the tables Spark writes are Trino's ``iceberg.<namespace>.<table>``.

Minimal use::

    trino = LocalTrino.from_settings(Settings.from_env())
    trino.start()            # downloads once, then blocks until the coordinator accepts queries
    print(trino.url)         # http://127.0.0.1:8080
    trino.stop()             # SIGTERM (graceful), bounded wait, then SIGKILL

Contract: :meth:`LocalTrino.start` never starts a second server over the same
state directory (a running one recorded in the PID file is returned as is);
:meth:`LocalTrino.stop` signals only the recorded PID, and only when that
process is this server. The catalog's database must answer before Trino starts
(the local PostgreSQL is started when the settings use it).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.errors import TrinoError
from framework.local.processes import alive, port_is_free, wait_exit
from framework.local.trino_dist import Progress, ensure_server, find_jdk
from framework.log import get_logger
from framework.settings import Settings

if TYPE_CHECKING:
    from framework.local.postgres import PostgresTarget

log = get_logger("trino")

STOP_TIMEOUT = 30.0
MAIN_CLASS = "io.trino.server.TrinoServer"

#: JVM options from Trino's deployment guide, with the heap set by ``PIPELINE_TRINO_HEAP``
JVM_OPTIONS = ("-XX:+UseG1GC", "-XX:G1HeapRegionSize=32M", "-XX:+ExplicitGCInvokesConcurrent",
               "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow", "-XX:ReservedCodeCacheSize=256M",
               "-XX:PerMethodRecompilationCutoff=10000", "-XX:PerBytecodeRecompilationCutoff=10000",
               "-Djdk.attach.allowAttachSelf=true", "-Djdk.nio.maxCachedBufferSize=2000000",
               "-XX:+EnableDynamicAgentLoading", "--enable-native-access=ALL-UNNAMED",
               "-Dfile.encoding=UTF-8", "-Djava.awt.headless=true")


def _properties(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def catalog_properties(settings: Settings, target: "PostgresTarget") -> dict[str, str]:
    """``etc/catalog/<catalog>.properties``: Iceberg's JDBC catalog as IcebergWriter and pyiceberg use it.

    ``iceberg.jdbc-catalog.catalog-name`` is the ``catalog_name`` column of
    ``iceberg_tables`` that Spark writes, so both name the same tables. A local
    warehouse is read with Trino's native local file system; an ``s3a://`` one
    with its native S3 file system (``PIPELINE_ICEBERG_S3_ENDPOINT``, AWS's
    environment credentials); other schemes with Trino's Hadoop file system.
    """
    props = {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.catalog-name": settings.iceberg_catalog,
        "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
        "iceberg.jdbc-catalog.connection-url": target.jdbc_url,
        "iceberg.jdbc-catalog.connection-user": target.user,
        "iceberg.jdbc-catalog.connection-password": target.password,
        "iceberg.jdbc-catalog.default-warehouse-dir": settings.warehouse_url,
    }
    warehouse = settings.warehouse_url
    if warehouse.startswith("file:"):
        props.update({"fs.native-local.enabled": "true", "local.location": "/"})
    elif warehouse.startswith("s3a://"):
        props.update({"fs.native-s3.enabled": "true", "s3.region": "us-east-1"})
        if settings.iceberg_s3_endpoint:
            props.update({"s3.endpoint": settings.iceberg_s3_endpoint, "s3.path-style-access": "true"})
        for env, key in (("AWS_ACCESS_KEY_ID", "s3.aws-access-key"), ("AWS_SECRET_ACCESS_KEY", "s3.aws-secret-key")):
            if os.environ.get(env):
                props[key] = os.environ[env]
    else:
        props["fs.hadoop.enabled"] = "true"
    return props


@dataclass
class LocalTrino:
    """One Trino coordinator (also its only worker) bound to 127.0.0.1, its state under ``state_dir``."""

    state_dir: Path
    settings: Settings
    port: int = 8080
    version: str = "476"
    heap: str = "2g"
    cache_dir: Path = Path("~/.cache/pipeline-framework").expanduser()
    java_home: str = ""
    start_timeout: float = 180.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "LocalTrino":
        """The server the settings describe (state in ``<state_dir>/trino``)."""
        values: dict[str, Any] = dict(state_dir=Path(settings.state_dir) / "trino", settings=settings,
                                      port=settings.trino_port, version=settings.trino_version,
                                      heap=settings.trino_heap, cache_dir=Path(settings.cache_dir),
                                      java_home=settings.trino_java_home,
                                      start_timeout=settings.trino_start_timeout)
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ paths
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def etc_dir(self) -> Path:
        return self.state_dir / "etc"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def out_file(self) -> Path:
        return self.state_dir / "logs" / "launcher.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "trino.pid"

    # ---------------------------------------------------------------- config
    def server_properties(self, server_home: Path) -> dict[str, str]:
        """``etc/config.properties``: a coordinator that also runs tasks, sized for a small shared machine,
        with the node's facts (:meth:`node_properties`) and the plugin directory of ``server_home``."""
        return {
            **self.node_properties(),
            "plugin.dir": str(server_home / "plugin"),
            "coordinator": "true",
            "node-scheduler.include-coordinator": "true",
            "http-server.http.port": str(self.port),
            "discovery.uri": self.url,
            "catalog.config-dir": str(self.etc_dir.resolve() / "catalog"),
            "query.max-memory": "1GB",
            "query.max-memory-per-node": "1GB",
            "task.concurrency": "2",
            "task.max-worker-threads": "4",
            "web-ui.enabled": "false",
        }

    def node_properties(self) -> dict[str, str]:
        """The node's facts: bound to 127.0.0.1, a stable node id (the data directory is a JVM property)."""
        id_file = self.state_dir / "node.id"
        if not id_file.is_file():
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(str(uuid.uuid4()) + "\n")
        return {"node.environment": "pipeline", "node.id": id_file.read_text().strip(),
                "node.bind-ip": "127.0.0.1", "node.internal-address": "127.0.0.1"}

    def write_config(self, target: "PostgresTarget", server_home: Path) -> None:
        """Write the ``etc/`` files (the catalog each time: the database password or warehouse may change)."""
        catalog = self.etc_dir / "catalog"
        catalog.mkdir(parents=True, exist_ok=True)
        for stale in catalog.glob("*.properties"):
            stale.unlink()
        (self.etc_dir / "config.properties").write_text(_properties(self.server_properties(server_home)))
        (self.etc_dir / "log.properties").write_text("io.trino=INFO\norg.apache.iceberg=WARN\n")
        path = catalog / f"{self.settings.iceberg_catalog}.properties"
        path.write_text(_properties(catalog_properties(self.settings, target)))
        path.chmod(0o600)  # it holds the database password

    def command(self, java_home: Path, server_home: Path) -> list[str]:
        """The JVM command line (no launcher script: the PID recorded is the JVM's own)."""
        etc = self.etc_dir.resolve()
        return [str(java_home / "bin" / "java"), f"-Xmx{self.heap}", *JVM_OPTIONS,
                f"-Dnode.data-dir={self.data_dir.resolve()}",
                f"-Dconfig={etc / 'config.properties'}", f"-Dlog.levels-file={etc / 'log.properties'}",
                f"-Dlog.output-file={self.log_file.resolve()}", "-Dlog.enable-console=false",
                "-cp", str(server_home / "lib" / "*"), MAIN_CLASS]

    # ------------------------------------------------------------- lifecycle
    def start(self, progress: Progress | None = None) -> "LocalTrino":
        """Start Trino in the background and block until it accepts queries.

        Finds the JDK first (before any download), makes sure the catalog's
        database answers, then downloads the server once. Returns at once
        when this server already runs. Raises :class:`TrinoError` (one sentence,
        with the end of the server's log where there is one) when there is no
        Java 24+, the port is taken, or the server exits or does not answer
        within ``start_timeout`` seconds.
        """
        pid = self.running_pid()
        if pid:
            log.info("Local Trino already running (pid {}) at {}", pid, self.url)
            return self
        java_home, java_version = find_jdk(self.java_home)
        if not port_is_free(self.port, wait=5.0):
            raise TrinoError(f"Port {self.port} on 127.0.0.1 is in use by another process, so the local Trino "
                             "cannot start; stop that process, set PIPELINE_TRINO_PORT to a free port, or set "
                             "PIPELINE_TRINO_URL to use a running Trino.")
        from framework.sinks.iceberg_catalog import ensure_catalog_database

        target = ensure_catalog_database(self.settings)
        home = ensure_server(self.cache_dir, self.version, progress)
        self.write_config(target, home)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, JAVA_HOME=str(java_home))
        with open(self.out_file, "ab") as out:
            proc = subprocess.Popen(self.command(java_home, home), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.state_dir, env=env, start_new_session=True)
        self._proc = proc
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "port": self.port, "version": self.version,
                                             "java": str(java_home), "started": time.time()}))
        log.info("Starting Trino {} (pid {}) on Java {} at {}, state in {}", self.version, proc.pid,
                 ".".join(map(str, java_version)), self.url, self.state_dir)
        self._wait_ready(proc)
        log.info("Local Trino ready at {} (log: {})", self.url, self.log_file)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """SIGTERM the recorded server (Trino shuts down gracefully), SIGKILL after ``timeout`` s; False if none ran."""
        pid = self.running_pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("Stopping local Trino (pid {})", pid)
        os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, timeout):
            log.warning("Trino pid {} did not stop within {:.0f}s; sending SIGKILL", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10)
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait(timeout=5)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
        log.info("Local Trino stopped")
        return True

    def running_pid(self) -> int | None:
        """PID of this server when it is alive, else None (a stale or reused PID is ignored)."""
        try:
            pid = int(json.loads(self.pid_file.read_text()).get("pid", 0))
        except (OSError, ValueError):
            return None
        if pid <= 0 or not alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if MAIN_CLASS in cmdline and str(self.etc_dir.resolve()) in cmdline else None

    def status(self) -> dict[str, Any]:
        """Running or not, where, whether it answers, the state and log paths."""
        pid = self.running_pid()
        return {"running": pid is not None, "pid": pid, "url": self.url, "version": self.version,
                "answers": bool(pid) and server_info(self.url) is not None,
                "state_dir": str(self.state_dir), "log_file": str(self.log_file)}

    def __enter__(self) -> "LocalTrino":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- internals
    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise TrinoError(f"The local Trino exited with code {proc.returncode} while starting; end of "
                                 f"{self.out_file} and {self.log_file}:\n{self._log_tail()}")
            info = server_info(self.url)
            if info is not None and not info.get("starting", True):
                return
            time.sleep(0.5)
        self.stop(timeout=10)
        raise TrinoError(f"The local Trino did not answer at {self.url} within {self.start_timeout:.0f}s; end of "
                         f"its log:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        out = []
        for path in (self.out_file, self.log_file):
            if path.is_file():
                out.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(out)


def server_info(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """Trino's ``/v1/info`` (``{"nodeVersion": {...}, "starting": false, ...}``), or None when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/info", timeout=timeout) as response:
            info: dict[str, Any] = json.loads(response.read())
            return info
    except (urllib.error.URLError, OSError, ValueError):
        return None
