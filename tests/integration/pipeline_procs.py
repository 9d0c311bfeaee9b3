"""Helpers for tests that run the real pipeline commands as subprocesses.

- :func:`pipeline_env`: a clean environment for ``cmd/*.py`` (no inherited
  ``PIPELINE_*`` except ``PIPELINE_CACHE_DIR``; ``PYTHONPATH`` = project root;
  ``local[2]`` Spark) plus the given settings.
- :class:`Proc`: one ``python cmd/<script>.py ...`` process in its own process
  group (a consumer's Spark JVM is in it), its output in a log file; graceful
  stop (SIGTERM to the command), crash (SIGKILL to the whole group), and a
  bounded :meth:`Proc.cleanup` for ``finally`` blocks.
- :func:`wait_until`: poll a condition with a deadline, failing early (with the
  tail of every log) when a process that should be running has exited.
- :func:`generate_data`, :func:`source_records`, :func:`assert_tables_hold_exactly`:
  a small dataset from ``data_source/generate.py`` and the check that the
  Parquet tables hold exactly its records (multiset of the record fields, times
  compared as UTC ISO strings with microseconds), no loss, no duplicate.
- :func:`topic_counts`: records in Kafka per topic (sum of end offsets).
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import orjson
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[2]
CMD = ROOT / "cmd"
TABLES = ("metrics", "workorder")
TAIL_LINES = 60


# ---------------------------------------------------------------- environment
def pipeline_env(**settings: object) -> dict[str, str]:
    """The environment of a pipeline command: ``settings`` as ``PIPELINE_<NAME>`` over clean defaults.

    ``pipeline_env(kafka_bootstrap_servers="127.0.0.1:9092", output_dir=tmp / "out")``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PIPELINE_SPARK_MASTER="local[2]",
               PIPELINE_LOG_LEVEL="INFO")
    env.update({f"PIPELINE_{name.upper()}": str(value) for name, value in settings.items()})
    return env


# ---------------------------------------------------------------- processes
class Proc:
    """``python cmd/<script> <args>`` in a new session (process group), output appended to ``log``."""

    def __init__(self, name: str, script: str, args: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            out.write(f"\n===== {name}: {script} {' '.join(args)} =====\n".encode())
            out.flush()
            self.popen = subprocess.Popen([sys.executable, str(CMD / script), *args], cwd=ROOT, env=dict(env),
                                          stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self.pid = self.popen.pid
        self.started = time.monotonic()

    # --------------------------------------------------------------- state
    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def exited(self) -> bool:
        """True once the command exited (without reaping it, so its group id stays ours)."""
        if self.popen.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if not self.exited() else f"exited {self.popen.poll()}"
        return f"--- {self.name} (pid {self.pid}, {state}), end of {self.log}:\n{self.tail()}"

    # --------------------------------------------------------------- stopping
    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the command to exit and return its code; on timeout kill it and fail."""
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() >= deadline:
                self._reap(kill=True)
                raise AssertionError(f"{self.name} did not exit within {timeout:.0f}s and was killed\n"
                                     f"{self.describe()}")
            time.sleep(0.1)
        return self._reap(kill=True)

    def terminate(self, timeout: float) -> int:
        """SIGTERM the command itself (a graceful stop: it flushes, stops its queries) and wait for it."""
        self._signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> int:
        """SIGKILL the whole process group (the command and its Spark JVM): a crash. Returns the exit code."""
        self._signal_group(signal.SIGKILL)
        return self.wait(30)

    def cleanup(self, grace: float = 15.0) -> None:
        """For ``finally`` blocks: SIGTERM, a bounded wait, then SIGKILL the group; never raises."""
        try:
            if self.popen.returncode is not None:
                return
            if not self.exited():
                self._signal(signal.SIGTERM)
                deadline = time.monotonic() + grace
                while not self.exited() and time.monotonic() < deadline:
                    time.sleep(0.1)
            self._reap(kill=True)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own failure
            print(f"cleanup of {self.name} (pid {self.pid}) failed: {exc}", file=sys.stderr)

    def _reap(self, kill: bool) -> int:
        """SIGKILL what is left of the group (a JVM the command left behind), then reap the command."""
        if kill and self.popen.returncode is None:
            self._signal_group(signal.SIGKILL)
        try:
            return self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} (pid {self.pid}) did not exit after SIGKILL") from None

    def _signal(self, sig: int) -> None:
        if self.popen.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _signal_group(self, sig: int) -> None:
        if self.popen.returncode is None:  # not reaped: the group id is still this command's pid
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def cleanup_all(procs: Iterable[Proc]) -> None:
    """:meth:`Proc.cleanup` on every process, the most recently started first."""
    for proc in reversed(list(procs)):
        proc.cleanup()


def diagnostics(procs: Iterable[Proc]) -> str:
    return "\n".join(p.describe() for p in procs)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, procs: Sequence[Proc] = (),
               running: Sequence[Proc] = (), interval: float = 0.2) -> object:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` s pass (AssertionError).

    Fails at once when a process of ``running`` exits; the message carries the
    tail of the log of every process in ``procs`` and ``running``.
    """
    deadline = time.monotonic() + timeout
    watched = list(dict.fromkeys([*procs, *running]))
    while True:
        value = predicate()
        if value:
            return value
        for proc in running:
            if proc.exited():
                raise AssertionError(f"{proc.name} exited ({proc.popen.poll()}) before {what}\n"
                                     f"{diagnostics(watched)}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnostics(watched)}")
        time.sleep(interval)


# ---------------------------------------------------------------- commands
def start_api(env: Mapping[str, str], log: Path, *args: str) -> Proc:
    """``python cmd/api_cmd.py <args>`` (PIPELINE_API_PORT and PIPELINE_DATA_DIR in ``env``)."""
    return Proc("api", "api_cmd.py", args, env, log)


def wait_api(proc: Proc, url: str, timeout: float = 60.0) -> None:
    """Wait until ``<url>/health`` answers."""
    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
    wait_until(healthy, timeout, f"the API at {url} to answer", running=[proc])


def start_producer(env: Mapping[str, str], log: Path, *args: str) -> Proc:
    """``python cmd/produce_cmd.py --all <args>`` (both shipped producers in one process)."""
    return Proc("producer", "produce_cmd.py", ["--all", *args], env, log)


def start_consumer(env: Mapping[str, str], log: Path, *args: str) -> Proc:
    """``python cmd/consume_cmd.py parquet <args>`` (the shipped Parquet consumer, unchanged)."""
    return Proc("consumer", "consume_cmd.py", ["parquet", *args], env, log)


# ---------------------------------------------------------------- Kafka
def topic_counts(bootstrap_servers: str, topics: Iterable[str] = TABLES, timeout: float = 10.0) -> dict[str, int]:
    """Records in each topic (sum of the partitions' end offsets); 0 for a topic that does not exist yet."""
    from framework.admin import KafkaAdmin
    from framework.settings import Settings

    with KafkaAdmin(Settings(), bootstrap_servers=bootstrap_servers, timeout=timeout) as admin:
        existing = set(admin.list_topics())
        return {t: (sum(admin.end_offsets(t).values()) if t in existing else 0) for t in topics}


def safe_topic_counts(bootstrap_servers: str, topics: Iterable[str] = TABLES) -> dict[str, int]:
    """:func:`topic_counts`, or all zeros while Kafka does not answer (for polling)."""
    topics = list(topics)
    try:
        return topic_counts(bootstrap_servers, topics, timeout=5.0)
    except Exception:  # noqa: BLE001 - polling: not answering now counts as nothing yet
        return {t: 0 for t in topics}


# ---------------------------------------------------------------- data
def generate_data(data_dir: Path) -> dict[str, list[dict]]:
    """A small dataset (3,240 metrics, 270 work orders) from data_source/generate.py; returns its records."""
    subprocess.run([sys.executable, str(ROOT / "data_source" / "generate.py"), str(data_dir), "--hours", "0.75",
                    "--params", "12", "--interval", "10", "--period", "10"], cwd=ROOT, check=True,
                   capture_output=True, timeout=60)
    return source_records(data_dir)


def source_records(data_dir: Path) -> dict[str, list[dict]]:
    """{table: records} of the JSON Lines files of ``data_dir``."""
    return {name: [orjson.loads(line) for line in (Path(data_dir) / f"{name}.json").read_bytes().splitlines()
                   if line.strip()] for name in TABLES}


def utc_iso(value: object) -> str:
    """A time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC: an ISO string from the source, a datetime from Parquet.

    Spark stores timestamps as UTC instants; pyarrow returns them tz-aware (UTC)
    or, without the UTC flag, naive in UTC: both are read as UTC here.
    """
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)  # the API's rule: no offset means UTC
    elif isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    else:
        raise TypeError(f"not a time: {value!r}")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_key(table: str, record: Mapping) -> tuple:
    """What must match between source and Parquet: (id, time, val) or (time, product, production)."""
    if table == "metrics":
        return int(record["id"]), utc_iso(record["time"]), float(record["val"])
    return utc_iso(record["time"]), int(record["product"]), float(record["production"])


def read_table(path: Path) -> list[dict]:
    """Every row of a Parquet table directory (its ``_staging``/``_*`` entries are ignored), or [] if absent."""
    if not Path(path).is_dir():
        return []
    return ds.dataset(str(path), format="parquet").to_table().to_pylist()


def assert_tables_hold_exactly(output_dir: Path, source: Mapping[str, list[dict]], context: str = "") -> None:
    """Each table holds exactly its source records (multiset), one row per Kafka record, nothing quarantined."""
    problems = []
    for table, records in source.items():
        rows = read_table(Path(output_dir) / table)
        want = collections.Counter(record_key(table, r) for r in records)
        got = collections.Counter(record_key(table, r) for r in rows)
        offsets = collections.Counter((r["kafka_partition"], r["kafka_offset"]) for r in rows)
        repeated = {k: n for k, n in offsets.items() if n > 1}
        missing, extra = want - got, got - want
        if missing or extra or repeated or len(rows) != len(records):
            problems.append(
                f"{table}: {len(rows)} rows, source has {len(records)}; {sum(missing.values())} missing "
                f"(e.g. {list(missing)[:3]}), {sum(extra.values())} extra or repeated (e.g. {list(extra)[:3]}), "
                f"{len(repeated)} Kafka (partition, offset) pairs written more than once (e.g. "
                f"{list(repeated)[:3]})")
        quarantined = read_table(Path(output_dir) / f"{table}_quarantine")
        if quarantined:
            problems.append(f"{table}: {len(quarantined)} rows quarantined, e.g. {quarantined[:2]}")
    assert not problems, "Parquet tables differ from the source" + (f" ({context})" if context else "") + ":\n" + \
        "\n".join(problems)


def published_batches(table_dir: Path) -> list[str]:
    """Names of the published batch files of a table."""
    return sorted(p.name for p in Path(table_dir).glob("batch-*.parquet")) if Path(table_dir).is_dir() else []


def checkpoint_logs(checkpoint_dir: Path, consumer: str, topic: str) -> tuple[list[int], list[int]]:
    """Batch ids in the offset log and the commit log of a Spark checkpoint."""
    base = Path(checkpoint_dir) / consumer / topic

    def ids(sub: str) -> list[int]:
        folder = base / sub
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []
    return ids("offsets"), ids("commits")


# ---------------------------------------------------------------- one pipeline under test
class Pipeline:
    """The commands of one test: one environment, one output, every process it starts (for cleanup).

    ``Pipeline(tmp_path, bootstrap_servers, data_dir, producer_retries=8)``: extra
    keyword arguments are settings (``PIPELINE_<NAME>``) for every command. The
    API gets a free port that stays the same across API restarts.
    """

    def __init__(self, workdir: Path, bootstrap_servers: str, data_dir: Path, **settings: object) -> None:
        from framework.local.kafka_broker import free_port

        self.workdir = Path(workdir)
        self.bootstrap_servers = bootstrap_servers
        self.output_dir = self.workdir / "output"
        self.checkpoint_dir = self.workdir / "checkpoints"
        self.logs = self.workdir / "logs"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = pipeline_env(kafka_bootstrap_servers=bootstrap_servers, api_port=self.api_port,
                                api_base_url=self.api_url, data_dir=data_dir, output_dir=self.output_dir,
                                checkpoint_dir=self.checkpoint_dir, state_dir=self.workdir / "state", **settings)
        self.procs: list[Proc] = []
        self.started = time.monotonic()
        self.timings: list[tuple[str, float]] = []

    def _track(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def api(self, *args: str, wait: bool = True) -> Proc:
        proc = self._track(start_api(self.env, self.logs / "api.log", *args))
        if wait:
            wait_api(proc, self.api_url)
        return proc

    def producer(self, *args: str) -> Proc:
        return self._track(start_producer(self.env, self.logs / "producer.log", *args))

    def consumer(self, *args: str, **settings: object) -> Proc:
        env = dict(self.env, **{f"PIPELINE_{k.upper()}": str(v) for k, v in settings.items()})
        return self._track(start_consumer(env, self.logs / "consumer.log", *args))

    def counts(self) -> dict[str, int]:
        return topic_counts(self.bootstrap_servers)

    def rows(self, table: str) -> int:
        return len(read_table(self.output_dir / table))

    def mark(self, what: str) -> None:
        """Note the time of a step (printed by :meth:`report`)."""
        self.timings.append((what, time.monotonic() - self.started))

    def report(self) -> str:
        return "timeline: " + ", ".join(f"{what} {at:.1f}s" for what, at in self.timings)

    def diagnostics(self) -> str:
        return diagnostics(self.procs)

    def cleanup(self) -> None:
        cleanup_all(self.procs)
