"""The embedded default: a real Apache Kafka broker (KRaft combined mode) on 127.0.0.1.

The broker is the official Apache Kafka release, run from the jars that
:mod:`framework.local.jars` resolves from Maven Central and caches per version.
Its state lives in ``<state_dir>/kafka/`` and is kept across restarts::

    server.properties   log4j2.properties   broker.pid
    data/               (KRaft metadata and topic logs, formatted once)
    logs/server.log     logs/broker.out (the JVM's stdout and stderr)

Minimal use::

    broker = LocalKafkaBroker.from_settings(Settings.from_env())
    broker.start()          # blocks until the broker answers a metadata request
    ...
    broker.stop()           # SIGTERM, bounded wait, then SIGKILL

Contract: :meth:`start` never starts a second broker over the same state
directory (an alive PID file means "already running", which is returned as is);
:meth:`stop` only signals the PID recorded in the PID file, and only when that
process is this broker.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from framework.errors import BrokerError
from framework.local.jars import java_executable, resolve
from framework.local.processes import alive as _alive
from framework.local.processes import port_is_free
from framework.local.processes import wait_exit as _wait_exit
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("broker")

LOG4J_VERSION = "2.24.3"
STOP_TIMEOUT = 30.0


def kafka_coordinates(version: str) -> list[str]:
    """Maven coordinates of the Kafka broker and a logging backend for it."""
    return [f"org.apache.kafka:kafka_2.13:{version}",
            f"org.apache.logging.log4j:log4j-slf4j2-impl:{LOG4J_VERSION}"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalKafkaBroker:
    """One Apache Kafka broker and KRaft controller in one JVM, bound to 127.0.0.1."""

    state_dir: Path
    port: int = 9092
    controller_port: int = 9093
    version: str = "4.1.1"
    cache_dir: Path = Path("~/.cache/pipeline-framework").expanduser()
    heap: str = "512m"
    start_timeout: float = 90.0
    node_id: int = 1
    #: ``controller.quorum.voters``; empty means this node alone (``<node_id>@127.0.0.1:<controller_port>``).
    voters: str = ""
    #: KRaft cluster id used when formatting; empty means a new random one.
    cluster_id: str = ""
    #: server.properties entries that override the single-broker defaults (e.g. replication factors).
    extra_properties: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> "LocalKafkaBroker":
        """The broker the settings describe (state in ``<state_dir>/kafka``)."""
        values = dict(state_dir=Path(settings.state_dir) / "kafka", port=settings.broker_port,
                      controller_port=settings.broker_controller_port, version=settings.kafka_version,
                      cache_dir=Path(settings.cache_dir), heap=settings.broker_heap,
                      start_timeout=settings.broker_start_timeout)
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------------ paths
    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j)."""
        return self.state_dir / "logs" / "server.log"

    @property
    def out_file(self) -> Path:
        """The JVM's stdout and stderr."""
        return self.state_dir / "logs" / "broker.out"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "server.properties"

    # ------------------------------------------------------------- lifecycle
    def start(self, wait: bool = True) -> "LocalKafkaBroker":
        """Start the broker in the background and wait until it answers a metadata request.

        Resolves the jars on first use, formats the storage once, and writes
        the PID file. Returns at once if this broker is already running.
        Raises :class:`BrokerError` (with the end of the broker's log) when it
        exits or does not answer within ``start_timeout`` seconds.

        ``wait=False`` returns as soon as the JVM is launched; call
        :meth:`wait_ready` later. A node of a multi-voter quorum needs this:
        it cannot answer before enough of the other voters run.
        """
        pid = self.running_pid()
        if pid:
            log.info("Local Kafka broker already running (pid {}) at {}", pid, self.bootstrap_servers)
            return self
        self._check_port_free(self.port)
        self._check_port_free(self.controller_port)
        classpath = os.pathsep.join(str(j) for j in resolve(
            f"kafka-{self.version}", kafka_coordinates(self.version), self.cache_dir))
        self._write_config()
        self._format(classpath)
        self.out_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [java_executable(), f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
               "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
               f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
               f"-Dkafka.logs.dir={self.log_file.parent}",
               "-cp", classpath, "kafka.Kafka", str(self.config_file)]
        with open(self.out_file, "ab") as out:
            # A new session: Ctrl-C in the terminal reaches the command, which
            # then stops the broker itself, cleanly and in order.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(json.dumps({"pid": proc.pid, "port": self.port,
                                             "controller_port": self.controller_port,
                                             "version": self.version, "started": time.time()}))
        log.info("Starting Apache Kafka {} (pid {}) at {}, data in {}",
                 self.version, proc.pid, self.bootstrap_servers, self.data_dir)
        self._proc = proc
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Block until the broker started by :meth:`start` answers (see there for the errors)."""
        if self._proc is None:
            raise BrokerError(f"The local Kafka broker at {self.bootstrap_servers} was not started by this "
                              "object, so there is nothing to wait for; call start() first.")
        self._wait_ready(self._proc)
        log.info("Local Kafka broker ready at {} (log: {})", self.bootstrap_servers, self.log_file)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the broker recorded in the PID file: SIGTERM, wait, then SIGKILL.

        Returns True if a broker was stopped, False if none was running.
        """
        pid = self.running_pid()
        if not pid:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("Stopping local Kafka broker (pid {})", pid)
        os.kill(pid, signal.SIGTERM)
        if not _wait_exit(pid, timeout):
            log.warning("Broker pid {} did not stop within {:.0f}s; sending SIGKILL", pid, timeout)
            os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, 10)
        self._reap(pid)
        self.pid_file.unlink(missing_ok=True)
        log.info("Local Kafka broker stopped")
        return True

    def kill(self) -> None:
        """SIGKILL the broker (for fault tests); the PID file is removed."""
        pid = self.running_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            _wait_exit(pid, 10)
            self._reap(pid)
        self.pid_file.unlink(missing_ok=True)

    def running_pid(self) -> int | None:
        """PID of this broker if it is alive, else None (a stale PID file is ignored)."""
        try:
            info = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(info.get("pid", 0))
        if pid <= 0 or not _alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        if cmdline and str(self.config_file) not in cmdline:
            return None  # the PID was reused by another process
        return pid

    def status(self) -> dict:
        """What a user wants to know: running or not, where, which version, where the logs are."""
        pid = self.running_pid()
        return {"running": pid is not None, "pid": pid, "bootstrap_servers": self.bootstrap_servers,
                "version": self.version, "data_dir": str(self.data_dir), "log_file": str(self.log_file)}

    def __enter__(self) -> "LocalKafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------- internals
    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir.resolve()),
            "auto.create.topics.enable": "false",
            "num.partitions": "3",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "3",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "-1",
        }
        props.update(self.extra_properties)
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.state_dir / "log4j2.properties").write_text(
            "status = error\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {self.log_file.resolve()}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            "logger.kafka.name = org.apache.kafka\nlogger.kafka.level = WARN\n"
        )

    def _format(self, classpath: str) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = self.cluster_id or _cluster_id()
        log.info("Formatting KRaft storage in {} (cluster id {})", self.data_dir, cluster_id)
        proc = subprocess.run(
            [java_executable(), "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self.config_file)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"Formatting the KRaft storage in {self.data_dir} failed: "
                              f"{(proc.stdout + proc.stderr).strip()[-2000:]}")

    def _wait_ready(self, proc: subprocess.Popen) -> None:
        from framework.admin import kafka_answers  # local: admin imports kafka-python

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"The local Kafka broker exited with code {proc.returncode} while starting; "
                                  f"end of {self.out_file}:\n{self._log_tail()}")
            if kafka_answers(self.bootstrap_servers, timeout=2.0):
                return
            time.sleep(0.5)
        self.stop(timeout=10)
        raise BrokerError(f"The local Kafka broker did not answer at {self.bootstrap_servers} within "
                          f"{self.start_timeout:.0f}s; end of its log:\n{self._log_tail()}")

    def _reap(self, pid: int) -> None:
        """Collect the exit status of a JVM this object started, so it leaves no zombie behind.

        A JVM's main thread can show as a zombie while its other threads still
        exit, which :func:`_alive` already counts as gone; this waits for the end.
        """
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.warning("Broker pid {} has not exited 10s after stopping", pid)
            self._proc = None

    def _log_tail(self, lines: int = 20) -> str:
        text = ""
        for f in (self.out_file, self.log_file):
            if f.is_file():
                text += "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text.strip()

    @staticmethod
    def _check_port_free(port: int, wait: float = 10.0) -> None:
        """Raise :class:`BrokerError` if ``port`` stays taken for ``wait`` seconds.

        The wait covers a broker that was just killed: its JVM threads may
        still hold the listening socket for a moment after the PID is gone.
        """
        if not port_is_free(port, wait):
            raise BrokerError(
                f"Port {port} on 127.0.0.1 is in use by another process, so the local broker cannot start; "
                "stop that process, or set PIPELINE_BROKER_PORT / PIPELINE_BROKER_CONTROLLER_PORT "
                "to free ports, or set PIPELINE_KAFKA_BOOTSTRAP_SERVERS to use a running cluster.")


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
