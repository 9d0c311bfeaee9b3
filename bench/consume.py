"""Section ``consume``: Kafka -> Parquet with our consumer, against plain Spark batch reads of the same topic.

The topic is filled once with Kafka's ``ProducerPerformance`` (``--payload-file``:
synthetic metrics records, keyless), then every repeat runs, interleaved, on
the same SparkSession (the framework's builder and settings):

- **reference, plain**: ``spark.read.format("kafka")...load()`` of the whole
  topic written to Parquet as it comes (binary key and value, metadata);
- **ours**: a :class:`~framework.consumer.base.ConsumerSparkABC` with the shipped
  ``metrics`` schema and :class:`~framework.sinks.ParquetWriter`, bounded mode,
  ``max_offsets_per_trigger=0`` (no rate limit: one micro-batch), fresh
  checkpoint and table; rows/s is the consumer's own figure (rows written and
  quarantined over its run, from the start of the query to its end);
- **reference, parsed**: the same batch read, parsed with ``from_json`` into the
  same columns as ours (record fields + ``kafka_*``), written to Parquet: the
  work ours does, without the streaming machinery and the exactly-once publish.

Two warm-up rounds of each come first and are not counted: class loading, code
generation, and the JIT compilation of the generated code. It reads up to
300,000 records (the measured topic itself when that is not larger): with a
20,000-record warm-up the repeats were still speeding up (ours 91k, 114k, then
160k rows/s in one run), so the median mixed cold and warm code.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench.environment import BenchEnvironment
from bench.probes import TimedParquetWriter, median_phases, phase_table
from bench.report import BenchReport, Figure, ratio_at_least, value_at_least
from bench.stats import median
from bench.synthetic import SyntheticRecords
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.log import get_logger
from framework.sinks import ForeachBatchWriter

log = get_logger("bench")

RATIO_TARGET = 0.9
RATE_TARGET = 150_000
PAYLOADS = 20_000
WARMUP_RECORDS = 300_000
WARMUP_ROUNDS = 2


@dataclass(frozen=True)
class ConsumeOptions:
    records: int
    repeat: int
    partitions: int


def consumer_class(name: str, topic: str, writer: ForeachBatchWriter) -> type[ConsumerSparkABC]:
    """A consumer of ``topic`` with the shipped metrics schema and ``writer`` (unregister ``name`` after use)."""
    from apps.consumers import METRICS_SCHEMA  # the shipped consumer's schema

    return type("BenchConsumer", (ConsumerSparkABC,), {  # type: ignore[return-value]
        "abstract": False, "name": name, "topics": [topic], "schema": METRICS_SCHEMA,
        "writer": writer, "__module__": __name__})


def run_consume(env: BenchEnvironment, opts: ConsumeOptions, report: BenchReport) -> None:
    """Fill a topic, measure ours and both references ``repeat`` times, add the figures to ``report``."""
    payload = env.path("consume", "payload.jsonl")
    SyntheticRecords().write_jsonl(payload, PAYLOADS)
    topics = {}
    # the measured topic doubles as the warm-up topic when it is not larger than a warm-up
    counts = (("measured", opts.records),) if opts.records <= WARMUP_RECORDS else \
        (("warm-up", WARMUP_RECORDS), ("measured", opts.records))
    for label, count in counts:
        log.info("consume: filling the {} topic with {:,} records (ProducerPerformance --payload-file)", label, count)
        topic = env.filled_topic("consume", count, opts.partitions, payload)
        topics[label] = (topic, env.end_offset_total(topic))
    topics.setdefault("warm-up", topics["measured"])
    spark = env.spark
    warm_topic, warm_rows = topics["warm-up"]
    for w in range(1, WARMUP_ROUNDS + 1):
        log.info("consume: warm-up round {} of {} on {:,} records (not counted)", w, WARMUP_ROUNDS, warm_rows)
        _reference(env, warm_topic, parsed=False, tag=f"warmup-plain-{w}")
        _ours(env, warm_topic, warm_rows, f"warmup-{w}")
        _reference(env, warm_topic, parsed=True, tag=f"warmup-parsed-{w}")
    topic, rows = topics["measured"]
    plain, ours, parsed = [], [], []
    for r in range(1, opts.repeat + 1):
        step = f"[{r}/{opts.repeat}]"
        plain.append(_reference(env, topic, parsed=False, tag=f"plain-{r}"))
        log.info("consume {} reference (Spark batch read -> Parquet): {:,.0f} rows/s", step,
                 rows / plain[-1]["seconds"])
        ours.append(_ours(env, topic, rows, f"run-{r}"))
        log.info("consume {} ours (bounded, no rate limit): {:,.0f} rows/s ({:,} rows, {} batch(es), {:.1f} s)", step,
                 ours[-1]["rows_per_s"], ours[-1]["rows"], ours[-1]["batches"], ours[-1]["seconds"])
        parsed.append(_reference(env, topic, parsed=True, tag=f"parsed-{r}"))
        log.info("consume {} reference (Spark batch read + from_json -> Parquet): {:,.0f} rows/s", step,
                 rows / parsed[-1]["seconds"])
    ours_rate = median(x["rows_per_s"] for x in ours)
    plain_rate = median(rows / x["seconds"] for x in plain)
    parsed_rate = median(rows / x["seconds"] for x in parsed)
    note = f"{rows:,} records, {opts.partitions} partitions, {spark.sparkContext.master}, median of {opts.repeat}"
    report.figures.append(Figure("consume", "Kafka -> Parquet", "rows/s", ours_rate, plain_rate,
                                 "Spark batch read -> Parquet", f">= {RATIO_TARGET} x ref",
                                 ratio_at_least(ours_rate, plain_rate, RATIO_TARGET), note))
    report.figures.append(Figure("consume", "Kafka -> Parquet", "rows/s", ours_rate, None, "absolute",
                                 f">= {RATE_TARGET:,} rows/s", value_at_least(ours_rate, RATE_TARGET)))
    report.figures.append(Figure("consume", "Kafka -> Parquet, vs parsed batch", "rows/s", ours_rate, parsed_rate,
                                 "Spark batch read + from_json -> Parquet", "", None,
                                 "same parsing work, no streaming or exactly-once publish"))
    phases = ours[-1]["spark_phases_ms"]
    if phases:
        table = phase_table("Consume (bounded, one batch): where the run's time goes (ms, last repeat)", phases, 1)
        table.rows.append(["  of which Parquet write + publish (in addBatch)", f"{1000 * ours[-1]['publish_s']:,.0f}",
                           f"{100000 * ours[-1]['publish_s'] / phases['triggerExecution']:.0f} %"
                           if phases.get("triggerExecution") else ""])
        table.rows.append(["reference: plain batch read -> Parquet", f"{1000 * plain[-1]['seconds']:,.0f}", ""])
        table.rows.append(["reference: batch read + from_json -> Parquet", f"{1000 * parsed[-1]['seconds']:,.0f}", ""])
        report.tables.append(table)
    report.details["consume"] = {"records": rows, "partitions": opts.partitions, "repeat": opts.repeat,
                                 "ours": ours, "reference_plain": plain, "reference_parsed": parsed}


def _ours(env: BenchEnvironment, topic: str, rows: int, tag: str) -> dict[str, Any]:
    name = f"{topic}-{tag}"
    base = env.path("consume", tag, "x").parent
    settings = env.settings.replace(output_dir=base / "output", checkpoint_dir=base / "checkpoints",
                                    starting_offsets="earliest")
    cls = consumer_class(name, topic, TimedParquetWriter())
    try:
        consumer = cls(settings, spark=env.spark, admin=env.admin, max_offsets_per_trigger=0)
        started = time.perf_counter()
        summary = consumer.run(mode="bounded")
        wall = time.perf_counter() - started
    finally:
        CONSUMERS.unregister(name)
    done = summary.rows_written + summary.rows_quarantined
    if done != rows:
        log.warning("The consumer processed {:,} rows of the {:,} in {}", done, rows, topic)
    t = summary.topics[topic]
    published = consumer.bound_writer.published  # type: ignore[attr-defined]
    return {"rows": done, "quarantined": summary.rows_quarantined, "batches": t.batches,
            "seconds": summary.elapsed_s, "wall_s": wall, "rows_per_s": summary.rows_per_second,
            "spark_phases_ms": median_phases(env.progress.of(f"{name}:{topic}")),
            "publish_s": sum(b.published_at - b.write_started for b in published)}


def _reference(env: BenchEnvironment, topic: str, parsed: bool, tag: str) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from framework.consumer.parsing import METADATA_COLUMNS, kafka_frame

    spark = env.spark
    target = env.path("consume", tag, "table")
    started = time.perf_counter()
    df = (spark.read.format("kafka").option("kafka.bootstrap.servers", env.bootstrap_servers)
          .option("subscribe", topic).option("startingOffsets", "earliest").option("endingOffsets", "latest").load())
    if parsed:
        from apps.consumers import METRICS_SCHEMA

        frame = kafka_frame(df)
        df = frame.select(F.from_json("raw_value", METRICS_SCHEMA).alias("r"), *METADATA_COLUMNS).select(
            "r.*", *METADATA_COLUMNS)
    df.write.mode("overwrite").parquet(str(target))
    return {"seconds": time.perf_counter() - started, "parsed": parsed}
