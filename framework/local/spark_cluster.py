"""A Spark standalone cluster on one machine, from the installed pyspark: a master and N workers.

For tests (and for trying the ``spark://`` path without Docker): the master
and every worker are separate JVMs started with pyspark's own ``spark-class``,
bound to 127.0.0.1 on free ports, each in its own process group (a worker's
executors run in the worker's group). Minimal use::

    with LocalSparkCluster(workers=2, cores_per_worker=1, memory="1g") as cluster:
        settings = settings.replace(spark_master=cluster.master_url, spark_driver_host="127.0.0.1")
        ...  # a SparkSession built from these settings runs its executors on the workers

Contract: :meth:`start` blocks until the master's JSON status lists every
worker as ALIVE, or raises :class:`~framework.errors.FrameworkError` with the
end of the failing process's log (and stops what it started). :meth:`stop`
signals only the process groups this object started: SIGTERM, a bounded wait,
then SIGKILL. Nothing is started, and no port is picked, before :meth:`start`.
Logs (``master.log``, ``worker-<i>.log``) and the workers' work directories
live in ``work_dir`` (a new temporary directory by default).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from framework.errors import FrameworkError
from framework.local.jars import java_executable
from framework.local.kafka_broker import free_port
from framework.log import get_logger

log = get_logger("spark-cluster")

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The installed pyspark package directory, which is a complete SPARK_HOME (bin/, jars/)."""
    import pyspark  # local: heavy

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file():
        raise FrameworkError(f"The installed pyspark at {home} has no bin/spark-class, so no standalone Spark "
                             "cluster can be started from it; reinstall pyspark (`pip install -e .`).")
    return home


@dataclass
class LocalSparkCluster:
    """A Spark standalone master and ``workers`` workers on 127.0.0.1, stopped by PID."""

    workers: int = 2
    cores_per_worker: int = 1
    memory: str = "1g"
    work_dir: Path | None = None
    start_timeout: float = 90.0
    stop_timeout: float = 20.0
    #: heap of the master and worker daemons themselves (not of the executors)
    daemon_memory: str = "512m"
    master_port: int = field(default=0, init=False)
    webui_port: int = field(default=0, init=False)
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cores_per_worker < 1:
            raise FrameworkError(f"A local Spark cluster needs at least 1 worker with at least 1 core; got "
                                 f"workers={self.workers}, cores_per_worker={self.cores_per_worker}.")

    # ------------------------------------------------------------ addresses
    @property
    def master_url(self) -> str:
        """``spark://127.0.0.1:<port>``, the value for PIPELINE_SPARK_MASTER (valid after :meth:`start`)."""
        self._require_started()
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def web_ui_url(self) -> str:
        """The master's web UI; ``<web_ui_url>/json/`` is its status as JSON."""
        self._require_started()
        return f"http://127.0.0.1:{self.webui_port}"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "LocalSparkCluster":
        """Start the master, then the workers; block until all workers are registered and ALIVE."""
        if self._procs:
            return self
        home = spark_home()
        java_executable()  # one sentence instead of a launcher error when Java is missing
        self.work_dir = Path(self.work_dir or tempfile.mkdtemp(prefix="spark-cluster-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.master_port, self.webui_port = free_port(), free_port()
        env = self._env(home)
        spark_class = str(home / "bin" / "spark-class")
        try:
            self._launch("master", ["bash", spark_class, MASTER_CLASS, "--host", "127.0.0.1",
                                    "--port", str(self.master_port), "--webui-port", str(self.webui_port)], env)
            self._wait(lambda status: status.get("status") == "ALIVE", "the master to come up")
            for i in range(1, self.workers + 1):
                worker_dir = self.work_dir / f"worker-{i}"
                worker_dir.mkdir(exist_ok=True)
                self._launch(f"worker-{i}", ["bash", spark_class, WORKER_CLASS, self.master_url,
                                             "--host", "127.0.0.1", "--cores", str(self.cores_per_worker),
                                             "--memory", self.memory, "--webui-port", "0",
                                             "--work-dir", str(worker_dir)], env)
            self._wait(lambda status: status.get("aliveworkers") == self.workers,
                       f"{self.workers} worker(s) to register")
        except BaseException:
            self.stop()
            raise
        log.info("Spark standalone cluster ready at {} ({} workers x {} core(s), {}), UI {}", self.master_url,
                 self.workers, self.cores_per_worker, self.memory, self.web_ui_url)
        return self

    def stop(self) -> None:
        """Stop the workers (with their executors), then the master: SIGTERM, bounded wait, SIGKILL."""
        while self._procs:
            name, proc = self._procs.pop()
            _stop_group(proc, self.stop_timeout)
            log.debug("Stopped Spark {} (pid {})", name, proc.pid)

    def pids(self) -> dict[str, int]:
        """PID of every process this cluster started and that is still running, by name."""
        return {name: proc.pid for name, proc in self._procs if proc.poll() is None}

    def master_status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The master's JSON status (``aliveworkers``, ``workers``, ``activeapps``, ``completedapps``, ...)."""
        with urllib.request.urlopen(f"{self.web_ui_url}/json/", timeout=timeout) as response:
            status: dict[str, Any] = json.loads(response.read().decode())
            return status

    def status(self) -> dict[str, Any]:
        running = bool(self._procs) and all(p.poll() is None for _, p in self._procs)
        out: dict[str, Any] = {"running": running, "pids": self.pids(), "work_dir": str(self.work_dir)}
        if running:
            out.update(master_url=self.master_url, web_ui=self.web_ui_url)
        return out

    def __enter__(self) -> "LocalSparkCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- internals
    def _env(self, home: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1", SPARK_MASTER_HOST="127.0.0.1",
                   SPARK_DAEMON_MEMORY=self.daemon_memory, SPARK_WORKER_DIR=str(self.work_dir),
                   PYSPARK_PYTHON=env.get("PYSPARK_PYTHON", sys.executable))
        return env

    def _launch(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        assert self.work_dir is not None
        with open(self.work_dir / f"{name}.log", "ab") as out:
            # A new session (and process group) per daemon: stop() signals the whole group,
            # which includes the executors a worker launched.
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=self.work_dir, start_new_session=True)
        self._procs.append((name, proc))
        log.info("Started Spark {} (pid {}), log {}", name, proc.pid, self.work_dir / f"{name}.log")

    def _wait(self, ready: Callable[[dict[str, Any]], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        while time.monotonic() < deadline:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    log_file = Path(self.work_dir or ".") / f"{name}.log"
                    raise FrameworkError(f"The Spark {name} exited with code {proc.returncode} while waiting for "
                                         f"{what}; end of {log_file}:\n{self._tail(name)}")
            try:
                if ready(self.master_status(timeout=2.0)):
                    return
            except (OSError, ValueError) as exc:  # not listening yet, or a partial answer
                last_error = str(exc)
            time.sleep(0.5)
        raise FrameworkError(f"The local Spark cluster did not finish waiting for {what} within "
                             f"{self.start_timeout:.0f}s ({last_error or 'no error'}); end of the master's log:\n"
                             f"{self._tail('master')}")

    def _tail(self, name: str, lines: int = 20) -> str:
        assert self.work_dir is not None
        path = self.work_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    def _require_started(self) -> None:
        if not self.master_port:
            raise FrameworkError("The local Spark cluster has not been started; call start() first.")


def _stop_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group led by ``proc``, wait up to ``timeout`` s for the leader, then SIGKILL the group.

    The leader is reaped only at the end: until then its PID (and so the group
    id) cannot be reused, so the signals never reach a foreign process.
    """
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _exited(proc):
        time.sleep(0.2)
    _signal_group(pgid, signal.SIGKILL)  # stragglers (executors) and a leader that ignored SIGTERM
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("Spark process {} did not exit after SIGKILL", proc.pid)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True when ``proc`` has exited, without reaping it."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
