"""Section ``jdbc``: the JDBC sink against a plain Spark ``df.write.jdbc`` append, and the dashboard's page load.

Both writers get the same cached DataFrame of production-line events (the
parsed columns plus the ``kafka_*`` metadata) and write it into the same
PostgreSQL (the local server on a free port in the work directory, or
``PIPELINE_POSTGRES_URL``), interleaved ``repeat`` times, medians reported:

- ours: :class:`~framework.sinks.jdbc.JdbcWriter` ``write_batch`` (staging write +
  the ledger transaction), rows only; target >= 0.8x the reference;
- reference: ``df.write.jdbc(url, table, mode="append")`` with the same driver options;
- with the production-line aggregates too (no reference; what the demo does per batch).

Then the dashboard is served against that database and loaded in headless
chromium (Debian's; skipped when it is not installed): time from navigation to
the first metrics drawn; target < 2 s.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.report import BenchReport, Figure, ratio_at_least
from framework.log import get_logger

log = get_logger("bench")
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


@dataclass(frozen=True)
class JdbcOptions:
    records: int = 200_000
    repeat: int = 2


def _frame(spark: Any, records: int) -> Any:
    from pyspark.sql import functions as F

    zones = F.element_at(F.array(*[F.lit(z) for z in ("cutting", "welding", "painting", "assembly")]),
                         (F.col("id") % 4 + 1).cast("int"))
    df = spark.range(records, numPartitions=2).select(
        F.when(F.col("id") % 20 == 1, "defect").otherwise("unit").alias("kind"),
        F.format_string("U%08d", F.col("id")).alias("unit_id"), zones.alias("zone"),
        F.concat(zones, F.lit("-"), (F.col("id") % 3 + 1).cast("string")).alias("point"),
        F.when(F.col("id") % 20 == 1, "scratch").alias("defect"),
        F.timestamp_seconds(F.lit(1_767_592_800) + F.col("id") * 60).alias("time"),
        F.lit("production_line").alias("kafka_topic"), (F.col("id") % 2).cast("int").alias("kafka_partition"),
        F.col("id").alias("kafka_offset"), F.current_timestamp().alias("kafka_timestamp"),
        zones.alias("kafka_key"))
    df = df.cache()
    df.count()
    return df


def run_jdbc(env: Any, options: JdbcOptions, report: BenchReport) -> None:
    from apps.production_line import AGGREGATIONS
    from framework.local.kafka_broker import free_port
    from framework.local.postgres import LocalPostgres, PostgresTarget
    from framework.sinks.jdbc import JdbcWriter

    settings = env.settings
    if settings.uses_local_postgres:
        pg_dir = env.path("pg")
        pg_dir.mkdir(exist_ok=True)
        for directory in (env.workdir, pg_dir):  # the server runs as the postgres user when we are root
            directory.chmod(0o711)
        pg = LocalPostgres(state_dir=pg_dir / "postgres", port=free_port())
        pg.start()
        env.track("local PostgreSQL", pg.stop)
        target = pg.target
    else:
        target = PostgresTarget.parse(settings.postgres_url)
    spark = env.spark
    df = _frame(spark, options.records)
    log.info("jdbc: {} rows per write into {}", options.records, target.safe_url)
    props = {**target.jdbc_properties, "batchsize": "10000", "reWriteBatchedInserts": "true",
             "stringtype": "unspecified"}
    ours, plain, with_aggs = [], [], []
    run = env.run_id
    for i in range(options.repeat):
        writer = JdbcWriter(f"bench_rows_{run}_{i}", url=target.url)._bind(settings, f"bench-jdbc-{run}-{i}")
        writer.prepare("production_line", fresh_checkpoint=True)
        writer.write_batch(df.limit(10), -1, "production_line")  # creates the tables: not timed
        t0 = time.perf_counter()
        writer.write_batch(df, 0, "production_line")
        ours.append(options.records / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        df.write.jdbc(target.jdbc_url, f"bench_plain_{run}_{i}", mode="append", properties=props)
        plain.append(options.records / (time.perf_counter() - t0))
        agg = JdbcWriter("production_events", aggregations=AGGREGATIONS, url=target.url)._bind(
            settings, "production-line")
        agg.prepare("production_line", fresh_checkpoint=False)
        t0 = time.perf_counter()
        agg.write_batch(df, int(run) * 10 + i, "production_line")  # a batch id no earlier run used
        with_aggs.append(options.records / (time.perf_counter() - t0))
        log.info("jdbc run {}: sink {:,.0f} rows/s, plain df.write.jdbc {:,.0f} rows/s, sink + 3 aggregates "
                 "{:,.0f} rows/s", i + 1, ours[-1], plain[-1], with_aggs[-1])
    df.unpersist()
    o, p = statistics.median(ours), statistics.median(plain)
    report.figures.append(Figure("jdbc", "JDBC sink append, exactly once (staging + ledger transaction)", "rows/s",
                                 o, p, "Spark df.write.jdbc append", ">= 0.8x", ratio_at_least(o, p, 0.8),
                                 f"{options.records:,} rows, median of {options.repeat}"))
    report.figures.append(Figure("jdbc", "JDBC sink + production-line aggregates", "rows/s",
                                 statistics.median(with_aggs), p, "Spark df.write.jdbc append", "", None,
                                 "raw rows + 3 aggregate tables merged in the same transaction"))
    report.figures.append(_page_load(target, settings))


def _page_load(target: Any, settings: Any) -> Figure:
    import os

    from apps.api import serve_in_thread
    from apps.dashboard import EXTENSION, create_dashboard

    chromium = next((c for c in CHROMIUM if os.path.exists(c)), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        return Figure("jdbc", "dashboard page load (chromium)", "s", None, None, "", "< 2 s", None,
                      "skipped: Debian's chromium or playwright is not installed")
    app = create_dashboard(target, settings)
    server = serve_in_thread(app, "127.0.0.1", 0)
    times = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            for _ in range(3):
                context = browser.new_context()  # a cold cache each time
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(server.url + "/", wait_until="load", timeout=120_000)
                page.wait_for_selector("body[data-refreshed]", timeout=120_000)
                times.append(time.perf_counter() - t0)
                context.close()
            browser.close()
    finally:
        server.stop()
        app.extensions[EXTENSION].close()
    load = statistics.median(times)
    log.info("dashboard page load (navigation to first metrics drawn): {}", ", ".join(f"{t:.2f}s" for t in times))
    return Figure("jdbc", "dashboard page load to first metrics drawn (chromium, cold cache)", "s", load, None, "",
                  "< 2 s", load < 2.0, "median of 3")
