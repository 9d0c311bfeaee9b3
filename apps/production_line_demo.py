"""The production-line demo job: simulated events -> API -> Kafka -> Spark -> PostgreSQL -> live dashboard.

``python cmd/production_line_cmd.py`` (or ``python cmd/run_cmd.py --demo production-line``):

1. starts the local Kafka broker and the local PostgreSQL (unless
   ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` / ``PIPELINE_POSTGRES_URL`` name servers);
2. serves the simulated line at ``/stream_data_production_line`` on the streaming API
   (``--events`` events, ``--seed``, ``--rate`` events per second);
3. serves the dashboard on ``PIPELINE_DASHBOARD_HOST:PIPELINE_DASHBOARD_PORT`` and prints its URL;
4. runs the ``production-line`` producer and consumer together until every event is
   in PostgreSQL (raw rows appended, aggregates upserted, exactly once);
5. prints the row and aggregate counts and checks them against the simulation's
   own answer key; with ``--serve`` keeps the dashboard up until Ctrl-C;
6. stops what it started.

A run stopped at any point (Ctrl-C, or SIGKILL) resumes on the next run with the
same ``--events``/``--seed``, and ends with exactly the same counts.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from framework import cli
from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import MAX_SECONDS, Settings
from framework.sources.production_line import ProductionLine

log = get_logger("demo")


@dataclass
class DemoSummary:
    """What the demo ended with (for the closing lines and for tests)."""

    dashboard_url: str = ""
    kafka_records: int = 0
    dead_lettered: int = 0
    events_rows: int = 0
    quarantined: int = 0
    units: dict[str, int] = field(default_factory=dict)
    defects: dict[str, int] = field(default_factory=dict)
    units_per_day: dict[str, int] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    elapsed: float = 0.0

    @property
    def exact(self) -> bool:
        return (self.units == self.expected.get("units") and self.defects == self.expected.get("defects")
                and self.units_per_day == self.expected.get("units_per_day"))

    def lines(self) -> list[str]:
        units, defects = sum(self.units.values()), sum(self.defects.values())
        fpy = f"{100 * (1 - defects / units):.2f}%" if units else "n/a"
        out = ["", "Production-line demo", "====================",
               f"dashboard          {self.dashboard_url}",
               f"Kafka records      {self.kafka_records:,} (dead-lettered {self.dead_lettered:,})",
               f"production_events  {self.events_rows:,} rows (quarantined {self.quarantined:,})",
               f"units / defects    {units:,} / {defects:,}   first-pass yield {fpy}"]
        for zone in sorted(set(self.units) | set(self.defects)):
            out.append(f"  {zone:<16} units {self.units.get(zone, 0):>7,}   defects {self.defects.get(zone, 0):>5,}")
        out.append("units per day      " + ", ".join(f"{d}: {n:,}" for d, n in sorted(self.units_per_day.items())))
        verdict = ("exact: equal to the simulation's answer key" if self.exact else
                   "NOT equal to the simulation's answer key" if self.complete else "incomplete (stopped early)")
        out += [f"check              {verdict}", f"elapsed            {self.elapsed:.1f}s"]
        return out


class ProductionLineDemo:
    """The demo job; :meth:`run` blocks until done, :meth:`stop` may be called from a signal handler."""

    def __init__(self, settings: Settings, line: ProductionLine, serve: bool = False,
                 timeout: float | None = None) -> None:
        self.settings = settings
        self.line = line
        self.serve = serve
        self.timeout = timeout
        self._stop = threading.Event()
        self._active: list[Any] = []

    def stop(self) -> None:
        self._stop.set()
        for component in list(self._active):
            component.stop()

    def run(self) -> DemoSummary:
        from apps.api import create_app, serve_in_thread
        from apps.dashboard import EXTENSION, create_dashboard
        from apps.production_line import ProductionLineConsumer, ProductionLineProducer, register
        from framework.local.embedded import EmbeddedServices

        started = time.monotonic()
        summary = DemoSummary(expected=self.line.totals())
        with EmbeddedServices(self.settings) as services:
            target = services.ensure_postgres()
            settings = self.settings.replace(postgres_url=target.url,
                                             trigger_seconds=min(self.settings.trigger_seconds, 2.0))
            if not settings.api_base_url:
                app = register(create_app(settings), self.line)
                api = services.start_service("streaming API",
                                             lambda: serve_in_thread(app, settings.api_host, settings.api_port))
                settings = settings.replace(api_base_url=api.url)
            dashboard = create_dashboard(target, settings)
            server = services.start_service(
                "dashboard", lambda: serve_in_thread(dashboard, settings.dashboard_host, settings.dashboard_port))
            summary.dashboard_url = f"{server.url}/"
            print(f"dashboard: {summary.dashboard_url}  (refreshed every 10 s)", flush=True)
            try:
                self._stream(settings, ProductionLineProducer(settings), ProductionLineConsumer(settings), summary)
                self._count(settings, target, summary)
                summary.elapsed = time.monotonic() - started
                print("\n".join(summary.lines()), flush=True)
                if self.serve and not self._stop.is_set():
                    print(f"serving the dashboard at {summary.dashboard_url} until Ctrl-C", flush=True)
                    self._stop.wait()
            finally:
                dashboard.extensions[EXTENSION].close()
        summary.elapsed = time.monotonic() - started
        return summary

    def _stream(self, settings: Settings, producer: Any, consumer: Any, summary: DemoSummary) -> None:
        """Producer and continuous consumer together, until every event of the line is in PostgreSQL."""
        errors: list[BaseException] = []

        def work(component: Any, *args: Any) -> None:
            try:
                component.run(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)
                self.stop()

        self._active = [producer, consumer]
        threads = [threading.Thread(target=work, args=(producer,), name="producer", daemon=True),
                   threading.Thread(target=work, args=(consumer, "continuous"), name="consumer", daemon=True)]
        threads[0].start()
        self._wait_for_topic(settings, threads[0])  # the consumer subscribes to a topic the producer created
        threads[1].start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            while not self._stop.wait(1.0):
                if not threads[0].is_alive() and self._caught_up(settings):
                    summary.complete = True
                    break
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("Timeout of {:.0f}s reached; stopping", self.timeout)
                    break
        finally:
            producer.stop()
            consumer.stop()
            for t in threads:
                if t.ident is not None:
                    t.join(120)
            self._active = []
            consumer.close()
        if errors:
            raise errors[0]

    def _wait_for_topic(self, settings: Settings, producer: threading.Thread) -> None:
        from apps.production_line import TOPIC
        from framework.admin import KafkaAdmin

        with KafkaAdmin(settings) as admin:
            while producer.is_alive() and not self._stop.is_set() and TOPIC not in admin.list_topics():
                time.sleep(0.2)

    def _caught_up(self, settings: Settings) -> bool:
        """True when the consumer applied (rows + quarantined) every record in the topic."""
        from apps.production_line import TOPIC
        from framework.admin import KafkaAdmin
        from framework.local.postgres import PostgresTarget
        from framework.sinks.jdbc_sql import HEALTH_TABLE

        with KafkaAdmin(settings) as admin:
            records = sum(admin.end_offsets(TOPIC).values())
        try:
            with PostgresTarget.parse(settings.postgres_url).connect() as conn:
                row = conn.execute(f"SELECT rows + quarantined FROM {HEALTH_TABLE} WHERE consumer = %s AND topic = %s",
                                   ("production-line", TOPIC)).fetchone()
        except Exception:  # noqa: BLE001 - the health table appears with the first batch
            return False
        return row is not None and row[0] >= records

    @staticmethod
    def _count(settings: Settings, target: Any, summary: DemoSummary) -> None:
        from apps.production_line import EVENTS_TABLE, TOPIC
        from framework.admin import KafkaAdmin

        with KafkaAdmin(settings) as admin:
            topics = set(admin.list_topics())
            summary.kafka_records = sum(admin.end_offsets(TOPIC).values()) if TOPIC in topics else 0
            dlq = f"{TOPIC}.dlq"
            summary.dead_lettered = sum(admin.end_offsets(dlq).values()) if dlq in topics else 0
        with target.connect() as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}

            def rows(sql: str) -> list[tuple]:
                return conn.execute(sql).fetchall()
            if EVENTS_TABLE in tables:
                summary.events_rows = rows(f"SELECT count(*) FROM {EVENTS_TABLE}")[0][0]
            if f"{EVENTS_TABLE}_quarantine" in tables:
                summary.quarantined = rows(f"SELECT count(*) FROM {EVENTS_TABLE}_quarantine")[0][0]
            if "units_per_zone" in tables:
                summary.units = {z: int(n) for z, n in rows("SELECT zone, units FROM units_per_zone")}
            if "defects_per_zone" in tables:
                summary.defects = {z: int(n) for z, n in rows("SELECT zone, defects FROM defects_per_zone")}
            if "units_per_day" in tables:
                summary.units_per_day = {d.isoformat(): int(n) for d, n in
                                         rows("SELECT day, units FROM units_per_day WHERE units > 0")}


def _main(args: argparse.Namespace, settings: Settings) -> int:
    line = ProductionLine(seed=args.seed, records=args.events, rate=args.rate)
    demo = ProductionLineDemo(settings, line, serve=args.serve, timeout=args.timeout)

    def on_signal(signum: int, _frame: object) -> None:
        log.warning("{} received: stopping the demo cleanly", signal.Signals(signum).name)
        demo.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = demo.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    return 0 if summary.exact or not summary.complete else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Production-line demo on this machine: Kafka, PostgreSQL, the API serving a simulated line, "
                   "producer, Spark consumer (raw events + exact aggregates in PostgreSQL) and the live dashboard.")
    p.add_argument("--events", type=cli.bounded_int(1, 10_000_000), default=3000,
                   help="events in the simulated stream (default 3000)")
    p.add_argument("--seed", type=cli.bounded_int(0, 2**32 - 1), default=42, help="seed of the simulation (default 42)")
    p.add_argument("--rate", type=cli.bounded_float(0, 1e6, low_inclusive=False), default=50.0,
                   help="events per second the API serves (default 50)")
    p.add_argument("--serve", action="store_true", help="keep the dashboard up after the end, until Ctrl-C")
    p.add_argument("--timeout", type=cli.bounded_float(0, MAX_SECONDS, low_inclusive=False), default=None,
                   help="stop after this many seconds")
    try:
        return cli.run(p, _main, argv)
    except FrameworkError as exc:  # raised from a worker thread
        print(f"error: {exc}", file=sys.stderr)
        return 2
