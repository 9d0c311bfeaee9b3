"""The embedded default's database: a real PostgreSQL server (Debian's package) on 127.0.0.1.

Used by the JDBC sink, the dashboard and the Iceberg catalog when
``PIPELINE_POSTGRES_URL`` is empty. Its state lives in ``<state_dir>/postgres/``
and is kept across restarts::

    data/            the database cluster (initdb, once), owned by the server's user
    run/             the server's Unix socket
    logs/postgres.log
    password         the generated password of the ``pipeline`` role (mode 0600)
    postgres.pid     what :meth:`LocalPostgres.start` started

Minimal use::

    pg = LocalPostgres.from_settings(Settings.from_env())
    pg.start()                 # blocks until the server accepts a connection
    print(pg.url)              # postgresql://pipeline:...@127.0.0.1:5433/pipeline
    pg.stop()                  # fast shutdown (SIGINT), bounded wait, then SIGKILL

Contract: :meth:`start` never starts a second server over the same data
directory (a running server recorded in the PID file is returned as is);
:meth:`stop` only signals the PID it recorded, and only when that process is
this server. ``initdb`` and the server refuse to run as root (PostgreSQL's own
rule), so as root they run as the ``postgres`` user that Debian's package
creates; the state directory must then be reachable by that user.

The server binaries are found in ``/usr/lib/postgresql/<major>/bin`` (Debian's
layout, newest major first) or on ``PATH``; ``make install`` installs the
``postgresql`` package when it is missing and the user is root.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from framework.errors import PostgresError
from framework.local.processes import alive, port_is_free, wait_exit
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("postgres")

DATABASE = "pipeline"
ROLE = "pipeline"
SERVER_USER = "postgres"
STOP_TIMEOUT = 30.0
DEBIAN_BIN = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresTarget:
    """Where a PostgreSQL database is: parsed from a ``postgresql://user:password@host:port/db`` URL."""

    host: str
    port: int
    database: str
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> "PostgresTarget":
        """Parse ``url``; raises :class:`PostgresError` naming the URL when it is not a PostgreSQL URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
            raise PostgresError(f"{url!r} is not a PostgreSQL URL; expected "
                                "postgresql://user:password@host:5432/database.")
        return cls(host=parts.hostname, port=parts.port or 5432, database=unquote(parts.path.strip("/")),
                   user=unquote(parts.username or ""), password=unquote(parts.password or ""))

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL (with the password)."""
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}"

    @property
    def safe_url(self) -> str:
        """The URL without the password, for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def jdbc_url(self) -> str:
        """The URL of PostgreSQL's JDBC driver (``org.postgresql.Driver``), without credentials."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    @property
    def jdbc_properties(self) -> dict[str, str]:
        """User, password and driver class for Spark's JDBC data source."""
        return {"user": self.user, "password": self.password, "driver": "org.postgresql.Driver"}

    def connect(self, timeout: float = 10.0, **kwargs: Any) -> Any:
        """A new psycopg connection; raises :class:`PostgresError` (one sentence) when it cannot connect."""
        import psycopg

        params: dict[str, Any] = dict(host=self.host, port=self.port, dbname=self.database, user=self.user,
                                      password=self.password, connect_timeout=max(1, int(timeout)))
        params.update(kwargs)
        try:
            return psycopg.connect(**params)
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise PostgresError(f"PostgreSQL at {self.safe_url} cannot be reached ({reason}); start it "
                                "(`pipeline postgres start`) or fix PIPELINE_POSTGRES_URL.") from None


def server_bin_dir() -> Path | None:
    """Directory of ``initdb``/``postgres``: Debian's newest ``/usr/lib/postgresql/<major>/bin``, else PATH."""
    if DEBIAN_BIN.is_dir():
        majors = sorted((d for d in DEBIAN_BIN.iterdir() if (d / "bin" / "initdb").is_file()),
                        key=lambda d: int(d.name) if d.name.isdigit() else 0, reverse=True)
        if majors:
            return majors[0] / "bin"
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class LocalPostgres:
    """One PostgreSQL server bound to 127.0.0.1, its data under ``state_dir``."""

    state_dir: Path
    port: int = 5433
    start_timeout: float = 60.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "LocalPostgres":
        """The server the settings describe (state in ``<state_dir>/postgres``)."""
        values: dict[str, Any] = dict(state_dir=Path(settings.state_dir) / "postgres",
                                      port=settings.postgres_port, start_timeout=settings.postgres_start_timeout)
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ paths
    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "postgres.pid"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "password"

    @property
    def target(self) -> PostgresTarget:
        """Connection facts of the ``pipeline`` database (the password is created on first start)."""
        password = self.password_file.read_text().strip() if self.password_file.is_file() else ""
        return PostgresTarget("127.0.0.1", self.port, DATABASE, ROLE, password)

    @property
    def url(self) -> str:
        return self.target.url

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "LocalPostgres":
        """Start the server in the background and block until it accepts a connection.

        Creates the cluster (``initdb``) and the ``pipeline`` role and database
        on first use. Returns at once when this server already runs. Raises
        :class:`PostgresError` (one sentence, with the end of the server's log
        where there is one) when the binaries are missing, the port is taken,
        or the server exits or does not answer within ``start_timeout`` seconds.
        """
        pid = self.running_pid()
        if pid:
            log.info("Local PostgreSQL already running (pid {}) at {}", pid, self.target.safe_url)
            return self
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise PostgresError("PostgreSQL's server programs (initdb, postgres) are not installed; run "
                                "`make install` as root (it installs Debian's postgresql package) or "
                                "`apt-get install postgresql`, or set PIPELINE_POSTGRES_URL to a running server.")
        if not port_is_free(self.port, wait=5.0):
            raise PostgresError(f"Port {self.port} on 127.0.0.1 is in use by another process, so the local "
                                "PostgreSQL cannot start; stop that process, set PIPELINE_POSTGRES_PORT to a free "
                                "port, or set PIPELINE_POSTGRES_URL to use that server.")
        user = SERVER_USER if os.geteuid() == 0 else None
        self._init_cluster(bin_dir, user)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        _chown(self.socket_dir, user)
        _chown(self.log_file.parent, user)
        cmd = [str(bin_dir / "postgres"), "-D", str(self.data_dir.resolve()),
               "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
               "-c", f"unix_socket_directories={self.socket_dir.resolve()}",
               "-c", f"log_directory={self.log_file.parent.resolve()}", "-c", "logging_collector=off",
               "-c", "max_connections=100", "-c", "shared_buffers=128MB"]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, user=user)
        self._proc = proc
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "port": self.port, "started": time.time()}))
        log.info("Starting PostgreSQL (pid {}) at 127.0.0.1:{}, data in {}", proc.pid, self.port, self.data_dir)
        self._wait_ready(proc)
        self._ensure_database()
        log.info("Local PostgreSQL ready at {} (log: {})", self.target.safe_url, self.log_file)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Fast shutdown of the recorded server (SIGINT), then SIGKILL after ``timeout`` s; False if none ran."""
        pid = self.running_pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("Stopping local PostgreSQL (pid {})", pid)
        os.kill(pid, signal.SIGINT)
        if not wait_exit(pid, timeout):
            log.warning("PostgreSQL pid {} did not stop within {:.0f}s; sending SIGKILL", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 10)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)
        log.info("Local PostgreSQL stopped")
        return True

    def running_pid(self) -> int | None:
        """PID of this server when it is alive, else None (a stale or reused PID is ignored)."""
        try:
            pid = int(json.loads(self.pid_file.read_text()).get("pid", 0))
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        if not alive(pid) or str(self.data_dir.resolve()) not in cmdline:
            return None
        return pid

    def status(self) -> dict[str, Any]:
        """Running or not, where (URL without password), the data and log paths."""
        pid = self.running_pid()
        return {"running": pid is not None, "pid": pid, "url": self.target.safe_url,
                "data_dir": str(self.data_dir), "log_file": str(self.log_file)}

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- internals
    def _init_cluster(self, bin_dir: Path, user: str | None) -> None:
        if (self.data_dir / "PG_VERSION").is_file():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.is_file():
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            self.password_file.chmod(0o600)
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-made cluster of a crashed initdb
        self.data_dir.mkdir(mode=0o700)
        _chown(self.data_dir, user)
        if user and subprocess.run(["test", "-w", str(self.data_dir)], user=user).returncode != 0:
            raise PostgresError(
                f"The server user {user!r} cannot reach {self.data_dir} (a parent directory is private to root); "
                "set PIPELINE_STATE_DIR to a directory other users can traverse, or PIPELINE_POSTGRES_URL.")
        pwfile = self.state_dir / "run-initdb-pw"
        pwfile.write_text(self.target.password + "\n")
        _chown(pwfile, user)
        log.info("Creating a PostgreSQL cluster in {}", self.data_dir)
        try:
            proc = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir.resolve()), "-U", ROLE, "-E", "UTF8",
                 "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                capture_output=True, text=True, user=user)
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise PostgresError(f"initdb failed for {self.data_dir}: {(proc.stdout + proc.stderr).strip()[-1500:]}")

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        target = self.target
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise PostgresError(f"The local PostgreSQL exited with code {proc.returncode} while starting; "
                                    f"end of {self.log_file}:\n{self._log_tail()}")
            try:
                with target.connect(timeout=2, dbname="postgres"):
                    return
            except PostgresError:
                time.sleep(0.3)
        self.stop(timeout=10)
        raise PostgresError(f"The local PostgreSQL did not answer at 127.0.0.1:{self.port} within "
                            f"{self.start_timeout:.0f}s; end of its log:\n{self._log_tail()}")

    def _ensure_database(self) -> None:
        with self.target.connect(dbname="postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"')
                log.info("Created database {}", DATABASE)

    def _log_tail(self, lines: int = 20) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def postgres_target(settings: Settings) -> PostgresTarget:
    """The database the settings name: ``PIPELINE_POSTGRES_URL``, or the local server's (not started here)."""
    if settings.postgres_url:
        return PostgresTarget.parse(settings.postgres_url)
    return LocalPostgres.from_settings(settings).target


def _chown(path: Path, user: str | None) -> None:
    if user:
        shutil.chown(path, user=user, group=None)
