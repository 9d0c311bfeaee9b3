"""The main job: JSON files -> streaming API -> Kafka -> Spark -> Parquet -> report, on one machine.

``python cmd/run_cmd.py`` (``make run``):

1. starts the local Apache Kafka broker, unless ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS``
   names a cluster (an already running local broker is reused and left running);
2. starts the streaming API on ``PIPELINE_API_HOST:PIPELINE_API_PORT`` (unless
   ``PIPELINE_API_BASE_URL`` names one), replaying ``data_source/`` as fast as
   possible (``--delay`` to pace it);
3. runs the ``metrics`` and ``workorder`` producers to the end of the data (they
   create their topics and resume where an earlier run stopped);
4. runs the ``parquet`` consumer in bounded mode until it has caught up;
5. writes the production report;
6. stops everything it started and prints a summary.

Run twice, the second run adds nothing. Ctrl-C (or SIGTERM) at any moment stops
the producers after a flush and the consumer after its current batch, then
stops Spark, the API and the broker and exits with code 130: what was
acknowledged is kept and the next run resumes from there. A second Ctrl-C stops
at once (an interrupted batch is not committed and is written by the next run).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from framework import cli
from framework.admin import KafkaAdmin
from framework.consumer.failures import check_output_dirs, reported_failures
from framework.local.embedded import EmbeddedServices
from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import MAX_DELAY_SECONDS, Settings
from framework.signals import StopSignals

log = get_logger("pipeline")

PRODUCER_NAMES = ("metrics", "workorder")
CONSUMER_NAME = "parquet"


class PipelineInterrupted(FrameworkError):
    """The main job was stopped by SIGINT/SIGTERM before it finished."""


@dataclass
class PipelineSummary:
    """What the main job did, for the closing table and for tests."""

    topics: dict[str, int] = field(default_factory=dict)          # records per topic (end offsets)
    dead_lettered: dict[str, int] = field(default_factory=dict)   # records per <topic>.dlq
    produced: dict[str, int] = field(default_factory=dict)        # sent by this run's producers
    tables: dict[str, int] = field(default_factory=dict)          # Parquet rows per table
    quarantined: dict[str, int] = field(default_factory=dict)     # rows per <table>_quarantine
    output_dir: Path = Path("output")
    report: Path | None = None
    elapsed: float = 0.0

    def lines(self) -> list[str]:
        out = ["", "Pipeline summary", "================"]
        for topic in sorted(self.topics):
            table = self.tables.get(topic, 0)
            out.append(f"{topic:<10} Kafka records {self.topics[topic]:>8,}  "
                       f"(+{self.produced.get(topic, 0):,} this run)"
                       f"   Parquet rows {table:>8,}   quarantined {self.quarantined.get(topic, 0):,}"
                       f"   dead-lettered {self.dead_lettered.get(topic, 0):,}")
        out.append(f"output     {self.output_dir.resolve()}")
        if self.report:
            out.append(f"report     {self.report.resolve()}")
        out.append(f"elapsed    {self.elapsed:.1f}s")
        return out


def parquet_rows(path: Path) -> int:
    """Rows in the Parquet table directory ``path`` (0 when it does not exist)."""
    import pyarrow.dataset as ds

    if not path.is_dir() or not any(path.rglob("*.parquet")):
        return 0
    return ds.dataset(str(path), format="parquet", partitioning="hive").count_rows()


class Pipeline:
    """The main job; :meth:`run` blocks until done, :meth:`stop` may be called from a signal handler."""

    def __init__(self, settings: Settings, delay: float = 0.0, report: bool = True,
                 producers: Sequence[str] = PRODUCER_NAMES, consumer: str = CONSUMER_NAME) -> None:
        self.settings = settings
        self.delay = delay
        self.want_report = report
        self.producer_names = tuple(producers)
        self.consumer_name = consumer
        self._stop = threading.Event()
        self._active: list[Any] = []

    def stop(self) -> None:
        """Stop the running stage (producers flush first) and skip the stages after it."""
        self._stop.set()
        for component in list(self._active):
            component.stop()

    def run(self) -> PipelineSummary:
        from apps.api import create_app, serve_in_thread
        from framework.commands.produce import run_producers
        from framework.consumer.base import CONSUMERS
        from framework.producer.base import PRODUCERS

        PRODUCERS.discover([], builtin="apps.producers")
        CONSUMERS.discover([], builtin="apps.consumers")
        producer_classes = [PRODUCERS.get(n) for n in self.producer_names]
        consumer_class = CONSUMERS.get(self.consumer_name)
        started = time.monotonic()
        summary = PipelineSummary(output_dir=Path(self.settings.output_dir))
        with EmbeddedServices(self.settings) as services:
            settings = self.settings
            if not settings.api_base_url:
                app = create_app(settings, delay=self.delay)
                server = services.start_service(
                    "streaming API", lambda: serve_in_thread(app, settings.api_host, settings.api_port))
                settings = settings.replace(api_base_url=server.url)
                log.info("Streaming API at {} (delay {}s between records)", server.url, self.delay)
            self._check_stop()

            log.info("Stage 1/3: producing {} from {}", ", ".join(self.producer_names), settings.api_url)
            producers = [cls(settings) for cls in producer_classes]
            self._active = producers
            outcomes = run_producers(producers, install_signals=False)
            self._active = []
            for outcome in outcomes:
                if outcome.error is not None:
                    raise outcome.error
                summary.produced[outcome.producer.topic] = outcome.summary.sent if outcome.summary else 0
            self._check_stop()

            log.info("Stage 2/3: consuming {} into Parquet until caught up", ", ".join(consumer_class.topics))
            from framework.spark import build_spark_session

            spark = build_spark_session(settings, app_name="pipeline")
            try:
                consumer = consumer_class(settings, spark=spark)
                self._active = [consumer]
                self._check_stop()  # a signal while Spark started
                consumer.run(mode="bounded")
                self._active = []
                self._check_stop()
                if self.want_report:
                    log.info("Stage 3/3: writing the production report")
                    from apps.report import build_report

                    summary.report, _ = build_report(spark, Path(settings.output_dir))
            finally:
                spark.stop()
            self._count(settings, summary, consumer_class.topics)
        summary.elapsed = time.monotonic() - started
        return summary

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise PipelineInterrupted("Stopped by a signal; what was acknowledged is kept and the next run "
                                      "resumes from there.")

    @staticmethod
    def _count(settings: Settings, summary: PipelineSummary, topics: Sequence[str]) -> None:
        with KafkaAdmin(settings) as admin:
            existing = set(admin.list_topics())
            for topic in topics:
                summary.topics[topic] = sum(admin.end_offsets(topic).values()) if topic in existing else 0
                dlq = f"{topic}.dlq"
                summary.dead_lettered[topic] = sum(admin.end_offsets(dlq).values()) if dlq in existing else 0
        out = Path(settings.output_dir)
        for topic in topics:
            summary.tables[topic] = parquet_rows(out / topic)
            summary.quarantined[topic] = parquet_rows(out / f"{topic}_quarantine")


def _main(args: argparse.Namespace, settings: Settings) -> int:
    check_output_dirs(settings)
    pipeline = Pipeline(settings, delay=args.delay, report=not args.no_report)
    with StopSignals(pipeline.stop, "the pipeline") as signals:  # stays in charge while Spark runs
        try:
            with reported_failures("the pipeline", settings.state_dir):
                summary = pipeline.run()
        except PipelineInterrupted as exc:
            if not signals.received:
                raise
            print(f"stopped by {signals.received}: {exc}", file=sys.stderr)
            return signals.exit_code
    print("\n".join(summary.lines()))
    sys.stdout.flush()
    return signals.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--demo" in argv:  # `run_cmd.py --demo production-line [options]`: the PostgreSQL + dashboard demo
        i = argv.index("--demo")
        demo = argv[i + 1] if i + 1 < len(argv) else ""
        if demo != "production-line":
            print(f"error: unknown demo {demo!r}; available: production-line", file=sys.stderr)
            return 2
        from apps.production_line_demo import main as demo_main

        return demo_main(argv[:i] + argv[i + 2:])
    p = cli.parser("Run the whole pipeline on this machine: broker, API, producers, Parquet consumer, report.")
    p.add_argument("--delay", type=cli.bounded_float(0, MAX_DELAY_SECONDS), default=0.0,
                   help="seconds between records the API waits (default 0: as fast as possible)")
    p.add_argument("--no-report", action="store_true", help="skip the production report")
    return cli.run(p, _main, argv)
