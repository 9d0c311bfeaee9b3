"""Section ``latency``: end-to-end latency at a steady rate, API -> producer -> Kafka -> Spark -> Parquet.

Set-up: the real API (own process) replays synthetic records at ``rate`` records/s
(``delay = 1 / rate``); a :class:`~framework.producer.base.ProducerABC` streams them into
a fresh topic (acks=all, the framework's client and settings); a
:class:`~framework.consumer.base.ConsumerSparkABC` in continuous mode with a
``trigger``-second processing-time trigger writes them with
:class:`TimedParquetWriter` (a :class:`~framework.sinks.ParquetWriter` that
notes when each batch file was published).

What is measured, per record: **publish time of its Parquet batch minus its
Kafka timestamp**.

- The Kafka timestamp (``CreateTime``) is set by the producer client at
  ``send()``, a few milliseconds after the API wrote the line (the HTTP read
  and the JSON decode in between are not included). It is the emit-time proxy.
- The publish time is taken right after :class:`~framework.sinks.BatchPublisher`
  renamed the batch file into the table (fsync'd): from then on every reader
  sees the record. Spark writes its commit log entry just after that.

Both clocks are this machine's ``time.time()``. Before the run, the same
consumer code runs a dozen small micro-batches on another topic (the JVM
compiles it); records of the first ``warmup`` seconds (by Kafka timestamp) are
also left out of the headline; the figure over all records is in the details.
The reference is the ideal consumer with the same trigger: batches committed
the instant their trigger fires, i.e. a record waits on average half a trigger
(p50 = 0.5 x trigger, p99 = 0.99 x trigger).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.apiserver import ApiProcess
from bench.consume import consumer_class
from bench.environment import BenchEnvironment
from bench.errors import BenchError
from bench.probes import PublishedBatch, TimedParquetWriter, median_phases, phase_table
from bench.producers import forget, producer_class, run_timed
from bench.report import BenchReport, Figure, fmt, value_below
from bench.stats import LatencySummary, percentile
from bench.synthetic import SyntheticRecords
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.log import get_logger

log = get_logger("bench")

P99_TARGET_MS = 2000.0
WARMUP_BATCHES = 12
WARMUP_BATCH_RECORDS = 500
STREAM = "latency"


@dataclass(frozen=True)
class LatencyOptions:
    rate: float
    seconds: float
    trigger: float
    warmup: float
    partitions: int


def run_latency(env: BenchEnvironment, opts: LatencyOptions, report: BenchReport) -> None:
    """Run the pipeline at ``opts.rate`` for ``opts.seconds`` and add the latency figures to ``report``."""
    if opts.rate <= 0 or opts.seconds <= 0 or opts.trigger <= 0:
        raise BenchError("The latency section needs a rate, a duration and a trigger above 0.")
    count = int(opts.rate * opts.seconds)
    data_dir = env.path("latency-data", "x").parent
    SyntheticRecords().write_jsonl(data_dir / f"{STREAM}.json", count)
    topic = env.new_topic("latency", opts.partitions)
    base = env.path("latency", "x").parent
    settings = env.settings.replace(trigger_seconds=opts.trigger, output_dir=base / "output",
                                    checkpoint_dir=base / "checkpoints", starting_offsets="earliest")
    _warm_up(env, settings, opts.partitions)
    cls = consumer_class(topic, topic, TimedParquetWriter())
    consumer = cls(settings, spark=env.spark, admin=None, max_offsets_per_trigger=0)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=_consume, args=(consumer, outcome), name="bench-latency-consumer", daemon=True)
    try:
        thread.start()
        _wait_query_started(env, topic, thread, outcome)
        log.info("latency: consumer running (trigger {} s); producing {:,} records at {:,.0f} records/s",
                 opts.trigger, count, opts.rate)
        with ApiProcess(data_dir, delay=1.0 / opts.rate) as server:
            pcls = producer_class(topic, f"{server.url}/stream_data_{STREAM}", partitions=opts.partitions)
            try:
                run = run_timed(pcls, settings, delay=1.0 / opts.rate)
            finally:
                forget(pcls)
            log.info("latency: {:,} records sent in {:.1f} s; waiting for the last batch", run.sent, run.elapsed_s)
            # the API stops only afterwards: its shutdown must not slow the last batch down
            _wait_published(consumer.bound_writer, run.sent, timeout=30 + 10 * opts.trigger)  # type: ignore[arg-type]
    finally:
        consumer.stop()
        thread.join(60)
        CONSUMERS.unregister(topic)
    if "error" in outcome:
        raise BenchError(f"The consumer of the latency section failed: {outcome['error']}")
    batches, steady, everything = _latencies(consumer.bound_writer.published, opts.warmup)  # type: ignore[attr-defined]
    phases = env.progress.of(f"{topic}:{topic}")
    ideal_p50, ideal_p99 = 0.5 * opts.trigger * 1000, 0.99 * opts.trigger * 1000
    note = (f"{opts.rate:,.0f} records/s for {opts.seconds:.0f} s, trigger {opts.trigger} s, "
            f"first {opts.warmup:.0f} s left out ({steady.count:,} records)")
    report.figures.append(Figure("latency", "end-to-end p50", "ms", steady.p50_ms, ideal_p50,
                                 "ideal consumer, same trigger", "", None, note))
    report.figures.append(Figure("latency", "end-to-end p99", "ms", steady.p99_ms, ideal_p99,
                                 "ideal consumer, same trigger", f"< {P99_TARGET_MS:,.0f} ms",
                                 value_below(steady.p99_ms, P99_TARGET_MS)))
    report.figures.append(Figure("latency", "end-to-end max", "ms", steady.max_ms, None, "", "", None))
    report.details["latency"] = {
        "rate": opts.rate, "seconds": opts.seconds, "trigger": opts.trigger, "warmup": opts.warmup,
        "sent": run.sent, "producer": run.to_dict(), "steady": steady.to_dict(), "all_records": everything.to_dict(),
        "batches": batches, "spark_batches": phases, "median_phases_ms": median_phases(phases)}
    table = phase_table("End-to-end run: where a micro-batch's time goes (median ms)", median_phases(phases),
                        len(phases))
    publish = [b["publish_s"] * 1000 for b in batches]
    if publish:
        table.rows.append(["  of which Parquet write + publish (in addBatch)", fmt(percentile(publish, 50), "ms"), ""])
    report.tables.append(table)


def _warm_up(env: BenchEnvironment, settings: Any, partitions: int,
             batches: int = WARMUP_BATCHES, per_batch: int = WARMUP_BATCH_RECORDS) -> None:
    """Run the measured consumer's code path (small micro-batches) on a pre-filled topic, unmeasured.

    The JVM compiles the parse, count and collect code of the first micro-batches
    slowly; without this the first seconds of the measured run show that, not
    the steady state the figure is about.
    """
    from framework.sinks import ParquetWriter

    payload = env.path("latency", "warm-up", "payload.jsonl")
    SyntheticRecords().write_jsonl(payload, per_batch)
    topic = env.filled_topic("latency-warmup", batches * per_batch, partitions, payload)
    log.info("latency: warm-up, {} micro-batches of {:,} records (not measured)", batches, per_batch)
    cls = consumer_class(topic, topic, ParquetWriter())
    base = payload.parent
    try:
        cls(settings.replace(output_dir=base / "output", checkpoint_dir=base / "checkpoints"), spark=env.spark,
            admin=env.admin, max_offsets_per_trigger=per_batch).run(mode="bounded")
    finally:
        CONSUMERS.unregister(topic)


def _consume(consumer: ConsumerSparkABC, outcome: dict[str, Any]) -> None:
    try:
        outcome["summary"] = consumer.run(mode="continuous")
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        outcome["error"] = exc


def _wait_query_started(env: BenchEnvironment, topic: str, thread: threading.Thread, outcome: dict,
                        timeout: float = 120.0) -> None:
    """Block until the consumer's query has finished its first (empty) trigger."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise BenchError(f"The consumer of the latency section ended before producing started: "
                             f"{outcome.get('error', 'no error reported')}")
        for query in env.spark.streams.active:
            if query.name and query.name.endswith(f":{topic}") and query.recentProgress:
                return
        time.sleep(0.2)
    raise BenchError(f"The consumer's query for {topic} did not start within {timeout:.0f} s.")


def _wait_published(writer: TimedParquetWriter, expected: int, timeout: float) -> None:
    """Block until the published batch files hold ``expected`` rows (or ``timeout`` seconds passed)."""
    import pyarrow.parquet as pq

    deadline = time.monotonic() + timeout
    counted: dict[Path, int] = {}
    while time.monotonic() < deadline:
        for batch in list(writer.published):
            if batch.path not in counted:
                counted[batch.path] = pq.read_metadata(batch.path).num_rows
        if sum(counted.values()) >= expected:
            return
        time.sleep(0.25)
    log.warning("latency: only {:,} of {:,} rows were published within {:.0f} s", sum(counted.values()),
                expected, timeout)


def _latencies(published: list[PublishedBatch], warmup: float) -> tuple[list[dict], LatencySummary, LatencySummary]:
    """Per-batch facts, and the latency summaries after the warm-up and over all records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[tuple[float, float]] = []  # (kafka timestamp s, latency s)
    batches = []
    for b in sorted(published, key=lambda b: b.batch_id):
        stamps = pq.read_table(b.path, columns=["kafka_timestamp"]).column(0).cast(pa.int64()).to_pylist()
        seconds = [s / 1e6 for s in stamps]
        rows += [(s, b.published_at - s) for s in seconds]
        if seconds:
            batches.append({"batch_id": b.batch_id, "rows": len(seconds), "published_at": b.published_at,
                            "publish_s": b.published_at - b.write_started,
                            "oldest_latency_s": b.published_at - min(seconds),
                            "newest_latency_s": b.published_at - max(seconds)})
    if not rows:
        raise BenchError("No record reached the Parquet table in the latency section.")
    first = min(t for t, _ in rows)
    steady = [lat for t, lat in rows if t >= first + warmup]
    return batches, LatencySummary.from_seconds(steady), LatencySummary.from_seconds([lat for _, lat in rows])
