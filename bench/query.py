"""Sections ``iceberg`` and ``trino``: the Iceberg consumer's rate, and SQL latency over the game's Iceberg tables.

Both run against the game's tables as the shipped ``events-iceberg`` consumer
writes them (``purchases``, ``joins``, ``declarations``, ``visits``): a topic
filled with game events (Kafka's ``ProducerPerformance --payload-file``), one
bounded run of the consumer, the catalog in a local PostgreSQL on a free port
in the work directory (or ``PIPELINE_POSTGRES_URL``), a namespace of the run.

``iceberg``:

- **Kafka -> Iceberg**: a consumer with the shipped ``metrics`` schema and
  :class:`~framework.sinks.iceberg.IcebergWriter`, bounded, one batch, against a
  Spark batch read of the same topic parsed with ``from_json`` into the same
  columns and appended to an Iceberg table (``DataFrameWriterV2.append``), the
  same work without streaming and the exactly-once check; target >= 0.9x;
- **pipeline query**: p50 and p99 over ``runs`` (20) rounds of :data:`QUERIES`
  with the default engine (DuckDB, one warm engine as the prompt keeps it),
  next to ``--engine spark`` on the same tables (the SparkSession warm too);
  target p50 <= 0.5 s; and, without a target, ``process_rounds`` rounds of
  ``python cmd/query_cmd.py "<statement>"`` as a new process each (what one
  command costs, start-up and imports included).

``trino``: the same rounds on the local Trino 476 (started in the work
directory, stopped afterwards; three rounds of warm-up), next to DuckDB;
target warm p50 <= 1 s. Every statement fetches at most 1,000 rows, like
``pipeline query``.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.report import BenchReport, Figure, ratio_at_least
from bench.stats import median, percentile
from framework.log import get_logger
from framework.query.trino_engine import SEED_STATEMENTS

log = get_logger("bench")

#: the seeds' Presto statements and the game demo's query (docs/game-demo.md)
QUERIES = [*SEED_STATEMENTS,
           "SELECT item, count(*) AS purchases, round(avg(strength), 2) AS avg_strength FROM purchases "
           "GROUP BY item ORDER BY item"]
LIMIT = 1000
GAME_PAYLOADS = 2000


@dataclass(frozen=True)
class QueryOptions:
    runs: int = 20
    game_events: int = 5000
    consume_records: int = 100_000
    repeat: int = 1
    process_rounds: int = 3


def _catalog_settings(env: Any) -> Any:
    """Settings with the Iceberg catalog of this bench run (PostgreSQL started once, stopped with ``env``)."""
    cached = getattr(env, "_iceberg_settings", None)
    if cached is not None:
        return cached
    settings = env.settings
    if settings.uses_local_postgres:  # the run's one PostgreSQL (shared with the jdbc and dashboard sections)
        settings = settings.replace(postgres_url=env.postgres.url)
    settings = settings.replace(iceberg_warehouse=str(env.path("warehouse")), iceberg_namespace=f"bench_{env.run_id}",
                                output_dir=env.path("query-output"), state_dir=env.path("query-state"),
                                checkpoint_dir=env.path("query-checkpoints"))
    env._iceberg_settings = settings
    return settings


def _game_payload(path: Any) -> None:
    rng = random.Random(7)
    items = ["sword", "shield", "axe", "potion", "spear"]
    with open(path, "w") as out:
        for i in range(GAME_PAYLOADS):
            kind = rng.choices(["purchase", "join", "war", "visit"], [6, 2, 1, 1])[0]
            event: dict[str, Any] = {"timestamp": f"2026-01-05T08:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                                     "host": "127.0.0.1:5001", "user_agent": f"player-{i % 16}"}
            if kind == "purchase":
                item = rng.choice(items)
                event.update(event_type=f"purchase_{item}", item=item, description=f"a bench {item}",
                             strength=round(min(10.0, max(0.0, rng.normalvariate(5, 4))), 2))
            elif kind == "join":
                event.update(event_type="join_guild", guild=rng.choice(["the-knights", "the-rangers"]))
            else:
                event["event_type"] = "declare_war" if kind == "war" else "visit"
            out.write(json.dumps(event) + "\n")


def game_tables(env: Any, opts: QueryOptions) -> Any:
    """The game's Iceberg tables written by a bounded run of the shipped routing; returns their settings."""
    cached = getattr(env, "_game_settings", None)
    if cached is not None:
        return cached
    from apps.game_consumers import GameEventsIcebergConsumer
    from framework.consumer.base import CONSUMERS
    from framework.sinks.iceberg import IcebergWriter

    settings = _catalog_settings(env)
    payload = env.path("query", "game.jsonl")
    _game_payload(payload)
    topic = env.filled_topic("game", opts.game_events, settings.topic_partitions, payload)
    name = f"bench-game-{env.run_id}"
    cls = type("BenchGame", (GameEventsIcebergConsumer,), {"name": name, "topics": [topic], "__module__": __name__,
                                                           "writer": IcebergWriter(tables={topic: "events"})})
    try:
        with cls(settings, spark=env.spark, max_offsets_per_trigger=0) as consumer:
            summary = consumer.run(mode="bounded")
    finally:
        CONSUMERS.unregister(name)
    log.info("query: game tables written by events-iceberg: {}", summary.tables)
    env._game_settings = settings
    return settings


def time_rounds(run: Callable[[str], Any], runs: int, warmup: int = 1) -> list[float]:
    """Seconds of each statement of :data:`QUERIES` over ``runs`` rounds, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for sql in QUERIES:
            run(sql)
    times = []
    for _ in range(runs):
        for sql in QUERIES:
            t0 = time.perf_counter()
            run(sql)
            times.append(time.perf_counter() - t0)
    return times


def _duck_times(settings: Any, runs: int) -> list[float]:
    from framework.query.duck import DuckEngine

    engine = DuckEngine(settings)
    try:
        return time_rounds(lambda sql: engine.execute(sql, LIMIT), runs)
    finally:
        engine.close()


def _spark_times(env: Any, settings: Any, runs: int) -> list[float]:
    from framework.sinks.iceberg_catalog import spark_catalog_conf

    spark = env.spark
    for key, value in spark_catalog_conf(settings).items():
        spark.conf.set(key, value)
    spark.sql(f"USE {settings.iceberg_catalog}.{settings.iceberg_namespace}")
    return time_rounds(lambda sql: spark.sql(sql).limit(LIMIT).collect(), runs)


def _command_times(settings: Any, rounds: int) -> list[float]:
    """Seconds of ``python cmd/query_cmd.py "<statement>"`` as a new process (start-up, imports, catalog, query)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_POSTGRES_URL=settings.postgres_url, PIPELINE_ICEBERG_WAREHOUSE=settings.iceberg_warehouse,
               PIPELINE_ICEBERG_NAMESPACE=settings.iceberg_namespace, PIPELINE_OUTPUT_DIR=str(settings.output_dir),
               PIPELINE_STATE_DIR=str(settings.state_dir), PIPELINE_CACHE_DIR=str(settings.cache_dir),
               PIPELINE_LOG_LEVEL="WARNING")

    def run(sql: str) -> None:
        subprocess.run([sys.executable, "cmd/query_cmd.py", "--limit", str(LIMIT), sql], cwd=root, env=env,
                       check=True, stdout=subprocess.DEVNULL)
    return time_rounds(run, rounds, warmup=0)


def _p(times: list[float], q: float) -> float:
    return percentile(times, q)


def run_iceberg(env: Any, opts: QueryOptions, report: BenchReport) -> None:
    """The Iceberg consumer against a batch append, and ``pipeline query`` p50/p99 against ``--engine spark``."""
    settings = game_tables(env, opts)
    _consume(env, settings, opts, report)
    duck = _duck_times(settings, opts.runs)
    log.info("iceberg: pipeline query (DuckDB) p50 {:.3f} s, p99 {:.3f} s over {} statements", _p(duck, 50),
             _p(duck, 99), len(duck))
    spark = _spark_times(env, settings, opts.runs)
    log.info("iceberg: --engine spark p50 {:.3f} s, p99 {:.3f} s over {} statements", _p(spark, 50), _p(spark, 99),
             len(spark))
    note = f"{opts.runs} rounds of {len(QUERIES)} statements (seeds' + game demo), {opts.game_events:,} game events"
    report.figures.append(Figure("iceberg", "pipeline query p50 (DuckDB over Iceberg)", "s", _p(duck, 50),
                                 _p(spark, 50), "--engine spark p50", "<= 0.5 s", _p(duck, 50) <= 0.5, note))
    report.figures.append(Figure("iceberg", "pipeline query p99 (DuckDB over Iceberg)", "s", _p(duck, 99),
                                 _p(spark, 99), "--engine spark p99", "", None, note))
    command = _command_times(settings, opts.process_rounds)
    log.info("iceberg: `pipeline query` as a new process per statement p50 {:.3f} s, p99 {:.3f} s",
             _p(command, 50), _p(command, 99))
    report.figures.append(Figure("iceberg", "pipeline query, a new process per statement, p50", "s", _p(command, 50),
                                 None, "", "", None, f"{opts.process_rounds} rounds of {len(QUERIES)} statements: "
                                 "interpreter start-up, imports, catalog, query"))
    report.details["iceberg_query"] = {"queries": QUERIES, "duckdb_s": duck, "spark_s": spark, "process_s": command}


def run_trino(env: Any, opts: QueryOptions, report: BenchReport) -> None:
    """Warm Trino against DuckDB on the same statements and tables."""
    from framework.local.kafka_broker import free_port
    from framework.local.trino import LocalTrino
    from framework.query.trino_engine import TrinoEngine

    settings = game_tables(env, opts)
    trino = LocalTrino.from_settings(settings.replace(trino_port=free_port()))
    t0 = time.perf_counter()
    trino.start()
    env.track("local Trino", trino.stop)
    started = time.perf_counter() - t0
    engine = TrinoEngine(settings, trino.url)
    try:
        times = time_rounds(lambda sql: engine.execute(sql, LIMIT), opts.runs, warmup=3)
    finally:
        engine.close()
        trino.stop()
    duck = _duck_times(settings, opts.runs)
    log.info("trino: warm p50 {:.3f} s, p99 {:.3f} s; DuckDB p50 {:.3f} s, p99 {:.3f} s; start {:.0f} s",
             _p(times, 50), _p(times, 99), _p(duck, 50), _p(duck, 99), started)
    per_query = {sql: median(times[i::len(QUERIES)]) for i, sql in enumerate(QUERIES)}
    for sql, seconds in per_query.items():
        log.info("trino: p50 {:.3f} s  {}", seconds, sql)
    note = f"{opts.runs} rounds of {len(QUERIES)} statements after 3 warm-up rounds; Trino started in {started:.0f} s"
    report.figures.append(Figure("trino", "Trino 476 warm query p50", "s", _p(times, 50), _p(duck, 50),
                                 "DuckDB p50", "<= 1 s", _p(times, 50) <= 1.0, note))
    report.figures.append(Figure("trino", "Trino 476 warm query p99", "s", _p(times, 99), _p(duck, 99),
                                 "DuckDB p99", "", None, note))
    report.details["trino"] = {"queries": QUERIES, "trino_s": times, "duckdb_s": duck, "start_s": started,
                               "per_query_p50_s": per_query}


def _consume(env: Any, settings: Any, opts: QueryOptions, report: BenchReport) -> None:
    from bench.consume import PAYLOADS, consumer_class
    from bench.synthetic import SyntheticRecords
    from framework.consumer.base import CONSUMERS
    from framework.sinks.iceberg import IcebergWriter

    payload = env.path("iceberg", "payload.jsonl")
    SyntheticRecords().write_jsonl(payload, PAYLOADS)
    topic = env.filled_topic("iceberg", opts.consume_records, settings.topic_partitions, payload)
    rows = env.end_offset_total(topic)
    ours, reference = [], []
    for r in range(opts.repeat):
        name = f"bench-iceberg-{env.run_id}-{r}"
        cls = consumer_class(name, topic, IcebergWriter(tables={topic: f"bench_metrics_{r}"}))
        run_settings = settings.replace(checkpoint_dir=env.path("iceberg", f"cp-{r}"))
        try:
            with cls(run_settings, spark=env.spark, admin=env.admin, max_offsets_per_trigger=0) as consumer:
                summary = consumer.run(mode="bounded")
        finally:
            CONSUMERS.unregister(name)
        ours.append(summary.rows_per_second)
        reference.append(rows / _batch_append(env, settings, topic, f"bench_append_{r}"))
        log.info("iceberg run {}: consumer {:,.0f} rows/s, batch read -> Iceberg append {:,.0f} rows/s", r + 1,
                 ours[-1], reference[-1])
    o, ref = median(ours), median(reference)
    report.figures.append(Figure("iceberg", "Kafka -> Iceberg (IcebergWriter, exactly once)", "rows/s", o, ref,
                                 "Spark batch read + from_json -> Iceberg append", ">= 0.9 x ref",
                                 ratio_at_least(o, ref, 0.9), f"{rows:,} records, median of {opts.repeat}"))


def _batch_append(env: Any, settings: Any, topic: str, table: str) -> float:
    """Seconds of a batch read of ``topic`` parsed into the consumer's columns and appended to a new table."""
    from pyspark.sql import functions as F

    from apps.consumers import METRICS_SCHEMA
    from framework.consumer.parsing import METADATA_COLUMNS, kafka_frame
    from framework.sinks.iceberg_catalog import qualified

    from framework.sinks.iceberg_catalog import spark_catalog_conf

    spark = env.spark
    for key, value in spark_catalog_conf(settings).items():
        spark.conf.set(key, value)
    target = qualified(settings, table)
    df = (spark.read.format("kafka").option("kafka.bootstrap.servers", env.bootstrap_servers)
          .option("subscribe", topic).option("startingOffsets", "earliest").option("endingOffsets", "latest").load())
    parsed = kafka_frame(df).select(F.from_json("raw_value", METRICS_SCHEMA).alias("r"), *METADATA_COLUMNS).select(
        "r.*", *METADATA_COLUMNS)
    parsed.limit(0).writeTo(target).using("iceberg").create()  # the table exists before, as the consumer's does
    started = time.perf_counter()
    parsed.writeTo(target).append()
    return time.perf_counter() - started
