"""What every benchmark section runs against: Kafka, a work directory, Spark, the reference tool.

:class:`BenchEnvironment` is a context manager. With the embedded default (no
``PIPELINE_KAFKA_BOOTSTRAP_SERVERS``) it starts a local Apache Kafka broker on
free ports with its state in a temporary directory, and stops it on exit;
with bootstrap servers set it uses that cluster and deletes the topics it
created on exit. Every topic gets a fresh name (``bench-<section>-<run>-<n>``),
because a producer resumes where its topic ends. Spark and the tool's
classpath are built on first use.

Contract: on exit everything this object started (broker, SparkSession,
API processes registered with :meth:`track`) is stopped by its own handle, and
the work directory is removed unless ``keep`` is set.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from framework.admin import KafkaAdmin, kafka_answers
from bench.errors import BenchError
from bench.perftool import producer_props, run_producer_performance, tools_classpath
from bench.probes import ProgressCollector
from framework.local.kafka_broker import LocalKafkaBroker, free_port
from framework.log import get_logger
from framework.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger("bench")


class BenchEnvironment:
    """Kafka (local or configured), a work directory, lazily Spark and the reference tool."""

    def __init__(self, settings: Settings, keep: bool = False) -> None:
        self.base_settings = settings
        self.settings = settings
        self.keep = keep
        self.run_id = time.strftime("%m%d%H%M%S")
        self.workdir = Path(".")
        self.broker: Any = None  # a LocalKafkaBroker, or a LocalKafkaCluster with PIPELINE_BROKER_COUNT > 1
        self.broker_count = 1
        self._admin: KafkaAdmin | None = None
        self._spark: "SparkSession | None" = None
        self.progress = ProgressCollector()
        self._classpath: str | None = None
        self._created: list[str] = []
        self._count = 0
        self._stoppers: list[tuple[str, Callable[[], Any]]] = []
        self.stopped: list[str] = []  # what close() stopped, for the closing line of an interrupted run
        self._postgres: Any = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "BenchEnvironment":
        self.workdir = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
        try:
            self._start_kafka()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop what was started here, newest first; remove the work directory unless ``keep``.

        Each step is attempted even when an earlier one failed (after Ctrl-C a Spark job may have
        been cut short); :attr:`stopped` names what was stopped.
        """
        while self._stoppers:
            name, stop = self._stoppers.pop()
            self._stop(name, stop)
        if self._spark is not None:
            spark, self._spark = self._spark, None
            self._stop("the Spark session", lambda: (self.progress.detach(spark), spark.stop()))
        if self._admin is not None:
            if self.broker is None and self._created:
                for topic in self._created:
                    try:
                        self._admin.delete_topic(topic)
                    except Exception as exc:  # noqa: BLE001 - a left-over topic is not worth failing for
                        log.warning("Could not delete benchmark topic {}: {}", topic, exc)
            self._admin.close()
            self._admin = None
        if self.broker is not None:
            broker, self.broker = self.broker, None
            self._stop(f"the local Kafka broker ({broker.bootstrap_servers})", broker.stop)
        if self.keep:
            log.info("Benchmark work directory kept: {}", self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop(self, name: str, stop: Callable[[], Any]) -> None:
        try:
            stop()
            self.stopped.append(name)
        except Exception as exc:  # noqa: BLE001 - keep stopping the others
            log.error("Stopping {} failed: {}", name, exc)

    def track(self, name: str, stop: Callable[[], Any]) -> None:
        """Call ``stop`` when the environment closes (if it was not stopped before)."""
        self._stoppers.append((name, stop))

    def untrack(self, stop: Callable[[], Any]) -> None:
        self._stoppers = [(n, s) for n, s in self._stoppers if s is not stop]

    def _start_kafka(self) -> None:
        base = self.base_settings
        paths = dict(output_dir=self.workdir / "output", checkpoint_dir=self.workdir / "checkpoints",
                     state_dir=self.workdir / "state")
        if base.uses_local_broker:  # PIPELINE_BROKER_COUNT brokers (a local cluster when more than 1)
            self.broker = start_local_kafka(base, base.broker_count, self.workdir / "kafka")
            self.broker_count = base.broker_count
            self.settings = base.replace(kafka_bootstrap_servers=self.broker.bootstrap_servers, **paths)
        else:
            if not kafka_answers(base.bootstrap_servers, timeout=5.0):
                raise BenchError(f"Kafka at {base.bootstrap_servers} (PIPELINE_KAFKA_BOOTSTRAP_SERVERS) does not "
                                 "answer; start the cluster or unset the variable to benchmark a local broker.")
            self.settings = base.replace(**paths)
            self.broker_count = self.admin.broker_count()
            log.info("Benchmarking the Kafka cluster at {} ({} brokers)", base.bootstrap_servers, self.broker_count)

    # ------------------------------------------------------------------ Kafka
    @property
    def bootstrap_servers(self) -> str:
        return self.settings.bootstrap_servers

    @property
    def admin(self) -> KafkaAdmin:
        if self._admin is None:
            self._admin = KafkaAdmin(self.settings)
        return self._admin

    def new_topic(self, section: str, partitions: int | None = None, create: bool = True) -> str:
        """A fresh topic name for ``section``; created with ``partitions`` (default: the settings') if asked."""
        self._count += 1
        name = f"bench-{section}-{self.run_id}-{self._count}"
        if create:
            self.admin.create_topic(name, partitions or self.settings.topic_partitions)
        self._created += [name, f"{name}.dlq"]
        return name

    def filled_topic(self, section: str, records: int, partitions: int, payload: Path) -> str:
        """A fresh topic filled with ``records`` lines of ``payload`` by Kafka's ProducerPerformance (acks=all)."""
        s = self.settings
        props = producer_props(self.bootstrap_servers, "all", s.producer_batch_size, s.producer_linger_ms, "none")
        topic = self.new_topic(section, partitions)
        run_producer_performance(self.perf_classpath, topic, records, props, payload_file=payload)
        return topic

    def end_offset_total(self, topic: str) -> int:
        """Records in ``topic`` (sum of the end offsets of its partitions)."""
        return sum(self.admin.end_offsets(topic).values())

    # ------------------------------------------------------------------ Spark, tools
    @property
    def spark(self) -> "SparkSession":
        """One SparkSession for every Spark measurement (the framework's builder and settings).

        A :class:`~bench.probes.ProgressCollector` (:attr:`progress`) listens to its queries.
        """
        if self._spark is None:
            from framework.spark import build_spark_session

            self._spark = build_spark_session(self.settings, app_name="pipeline-bench")
            self.progress.attach(self._spark)
        return self._spark

    @property
    def perf_classpath(self) -> str:
        """Classpath of Kafka's ProducerPerformance at the broker's version (resolved on first use)."""
        if self._classpath is None:
            self._classpath = tools_classpath(self.settings.kafka_version, self.settings.cache_dir)
        return self._classpath

    @property
    def postgres(self) -> Any:
        """The :class:`~framework.local.postgres.PostgresTarget` of the jdbc and dashboard sections.

        ``PIPELINE_POSTGRES_URL`` when set, else a local server on a free port in the
        work directory, started on first use and stopped on exit.
        """
        if self._postgres is None:
            from framework.local.postgres import LocalPostgres, PostgresTarget

            if not self.settings.uses_local_postgres:
                self._postgres = PostgresTarget.parse(self.settings.postgres_url)
            else:
                pg_dir = self.path("pg", "postgres").parent
                pg_dir.mkdir(exist_ok=True)
                for directory in (self.workdir, pg_dir):  # the server runs as the postgres user when we are root
                    directory.chmod(0o711)
                pg = LocalPostgres(state_dir=pg_dir / "postgres", port=free_port())
                pg.start()
                self.track("local PostgreSQL", pg.stop)
                self._postgres = pg.target
        return self._postgres

    def path(self, *parts: str) -> Path:
        """A path inside the work directory (parents created)."""
        target = self.workdir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def start_local_kafka(settings: Any, brokers: int, state_dir: Any) -> Any:
    """A local Kafka of ``brokers`` nodes on free ports under ``state_dir``, started (blocks until it answers)."""
    from framework.local.kafka_cluster import LocalKafkaCluster

    if brokers == 1:
        kafka: Any = LocalKafkaBroker.from_settings(settings, state_dir=state_dir, port=free_port(),
                                                    controller_port=free_port())
    else:
        kafka = LocalKafkaCluster.from_settings(settings, state_dir=state_dir,
                                                ports=[free_port() for _ in range(brokers)],
                                                controller_ports=[free_port() for _ in range(brokers)])
    log.info("Starting a local Kafka of {} broker(s) for the benchmark (state in {})", brokers, state_dir)
    kafka.start()
    return kafka
