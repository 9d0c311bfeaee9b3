"""Section ``jdbc``: the JDBC sink against a plain Spark ``df.write.jdbc`` append of the same rows.

Both writers get the same cached DataFrame of production-line events (the
parsed columns plus the ``kafka_*`` metadata) and write it into the same
PostgreSQL (:attr:`bench.environment.BenchEnvironment.postgres`: the local server
on a free port in the work directory, or ``PIPELINE_POSTGRES_URL``):

- ours: :class:`~framework.sinks.jdbc.JdbcWriter` ``write_batch`` (staging write +
  the ledger transaction), rows only; target >= 0.8x the reference;
- reference: ``df.write.jdbc(url, table, mode="append")`` with the same driver options;
- with the production-line aggregates too (no reference; what the demo does per batch).

Fairness: one untimed write of each at full size first (the JVM compiles the
JDBC write path and PostgreSQL warms its buffers during whichever write comes
first), then ``repeat`` timed rounds whose order alternates (ours first in even
rounds, the reference first in odd ones); medians reported.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.report import BenchReport, Figure, ratio_at_least
from framework.log import get_logger

log = get_logger("bench")
TOPIC = "production_line"


@dataclass(frozen=True)
class JdbcOptions:
    records: int = 200_000
    repeat: int = 3


def production_frame(spark: Any, records: int) -> Any:
    """``records`` production-line events as the consumer parses them (2 partitions), cached and counted."""
    from pyspark.sql import functions as F

    zones = F.element_at(F.array(*[F.lit(z) for z in ("cutting", "welding", "painting", "assembly")]),
                         (F.col("id") % 4 + 1).cast("int"))
    df = spark.range(records, numPartitions=2).select(
        F.when(F.col("id") % 20 == 1, "defect").otherwise("unit").alias("kind"),
        F.format_string("U%08d", F.col("id")).alias("unit_id"), zones.alias("zone"),
        F.concat(zones, F.lit("-"), (F.col("id") % 3 + 1).cast("string")).alias("point"),
        F.when(F.col("id") % 20 == 1, "scratch").alias("defect"),
        F.timestamp_seconds(F.lit(1_767_592_800) + F.col("id") * 60).alias("time"),
        F.lit(TOPIC).alias("kafka_topic"), (F.col("id") % 2).cast("int").alias("kafka_partition"),
        F.col("id").alias("kafka_offset"), F.current_timestamp().alias("kafka_timestamp"),
        zones.alias("kafka_key"))
    df = df.cache()
    df.count()
    return df


def run_jdbc(env: Any, options: JdbcOptions, report: BenchReport) -> None:
    from apps.production_line import AGGREGATIONS
    from framework.sinks.jdbc import JdbcWriter

    settings, target, run = env.settings, env.postgres, env.run_id
    df = production_frame(env.spark, options.records)
    log.info("jdbc: {} rows per write into {}", options.records, target.safe_url)
    props = {**target.jdbc_properties, "batchsize": "10000", "reWriteBatchedInserts": "true",
             "stringtype": "unspecified"}

    def sink(name: str) -> float:
        writer = JdbcWriter(name, url=target.url)._bind(settings, f"bench-{name}")
        writer.prepare(TOPIC, fresh_checkpoint=True)
        writer.write_batch(df.limit(10), -1, TOPIC)  # creates the tables: not timed
        t0 = time.perf_counter()
        writer.write_batch(df, 0, TOPIC)
        return options.records / (time.perf_counter() - t0)

    def plain(name: str) -> float:
        t0 = time.perf_counter()
        df.write.jdbc(target.jdbc_url, name, mode="append", properties=props)
        return options.records / (time.perf_counter() - t0)

    sink(f"bench_warm_rows_{run}")
    plain(f"bench_warm_plain_{run}")
    ours, reference, with_aggs = [], [], []
    for i in range(options.repeat):
        if i % 2 == 0:
            ours.append(sink(f"bench_rows_{run}_{i}"))
            reference.append(plain(f"bench_plain_{run}_{i}"))
        else:
            reference.append(plain(f"bench_plain_{run}_{i}"))
            ours.append(sink(f"bench_rows_{run}_{i}"))
        agg = JdbcWriter("production_events", aggregations=AGGREGATIONS, url=target.url)._bind(
            settings, "production-line")
        agg.prepare(TOPIC, fresh_checkpoint=False)
        t0 = time.perf_counter()
        agg.write_batch(df, int(run) * 10 + i, TOPIC)  # a batch id no earlier run used
        with_aggs.append(options.records / (time.perf_counter() - t0))
        log.info("jdbc run {}: sink {:,.0f} rows/s, plain df.write.jdbc {:,.0f} rows/s ({:.2f}x), sink + 3 "
                 "aggregates {:,.0f} rows/s", i + 1, ours[-1], reference[-1], ours[-1] / reference[-1], with_aggs[-1])
    df.unpersist()
    o, p = statistics.median(ours), statistics.median(reference)
    note = f"{options.records:,} rows, median of {options.repeat} after a warm-up write of each, order alternating"
    report.figures.append(Figure("jdbc", "JDBC sink append, exactly once (staging + ledger transaction)", "rows/s",
                                 o, p, "Spark df.write.jdbc append", ">= 0.8x", ratio_at_least(o, p, 0.8), note))
    report.figures.append(Figure("jdbc", "JDBC sink + production-line aggregates", "rows/s",
                                 statistics.median(with_aggs), p, "Spark df.write.jdbc append", "", None,
                                 "raw rows + 3 aggregate tables merged in the same transaction"))
