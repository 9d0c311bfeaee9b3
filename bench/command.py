"""``python cmd/bench_cmd.py [--quick] [--only SECTIONS] [--out DIR] ...``: measure the pipeline.

Runs against a local Kafka broker it starts on free ports (and stops), or
against ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` when set. Progress goes to stderr;
the result tables go to stdout and, with ``results.json`` and the sweep plot,
into ``bench_results/<timestamp>/`` (or ``--out``). Exit code 0, or 1 when a
section failed (the others are still measured and saved). Ctrl-C stops the
section, then everything the run started (broker, Spark, API processes), saves the
finished sections and exits with 130 after one line saying so; SIGTERM does the same
and exits 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from framework import cli
from bench.consume import ConsumeOptions
from bench.dashboard import DashboardOptions
from bench.jdbc import JdbcOptions
from bench.latency import LatencyOptions
from bench.produce import ProduceOptions
from bench.profile import ProfileOptions
from bench.query import QueryOptions
from bench.simulate import SimulateOptions
from bench.runner import SECTIONS, BenchOptions, check_sections, run_bench
from bench.sweep import FULL_GRID, QUICK_GRID, SweepGrid, SweepOptions, parse_values
from framework.settings import MAX_INT, MAX_SECONDS, Settings

# Bounds of the numeric flags (argparse refuses a value outside them with one sentence, exit code 2)
MAX_REPEAT = 100
MAX_RECORD_BYTES = 1_000_000  # Kafka's default max.request.size is 1 MiB
MAX_RATE = 1e9  # records/s
MAX_SIM_RUNS = 10_000
MAX_SIM_TIMESTEPS = 10_000_000
MAX_BROKERS = 9  # a local cluster has at most 9 brokers
MAX_PARTITIONS = 10_000
MAX_LINGER_MS = MAX_INT
MAX_PROCESSES = 64
RECORDS = cli.bounded_int(1)
SECONDS = cli.bounded_float(0, MAX_SECONDS, low_inclusive=False)

#: (quick, full) defaults of the size options
DEFAULTS = {
    "repeat": (2, 3),
    "records": (100_000, 500_000),
    "consume_records": (300_000, 2_000_000),
    "consume_repeat": (1, 3),
    "latency_seconds": (20.0, 60.0),
    "sweep_records": (30_000, 100_000),
    "profile_records": (30_000, 200_000),
    "processes": ((1, 2), (1, 2, 3)),
    "sim_runs": (4, 8),  # 4: each of 2 executors publishes 2 of chat-sim's 4 partitions, one after the other
    "sim_timesteps": (4000, 8000),  # quick: about 200,000 messages, so publishing, not start-up, fills the window
    "jdbc_records": (100_000, 500_000),
    "jdbc_repeat": (3, 5),  # a write of 100,000 rows swings by 2x between runs on a busy machine: an odd count
    "dashboard_loads": (3, 5),
    "game_events": (5_000, 20_000),
    "iceberg_records": (100_000, 500_000),
}


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("Benchmark the pipeline (produce, consume, end-to-end latency, API, producer configuration "
                   "sweep, produce-path profile), each figure next to a reference measured in the same run.")
    p.add_argument("--quick", action="store_true", help="small counts: a few minutes in all")
    p.add_argument("--only", default=",".join(SECTIONS), metavar="SECTIONS",
                   help=f"comma-separated sections to run (default: all of {','.join(SECTIONS)})")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to save results.json, results.md and sweep.png (default: bench_results/<timestamp>)")
    p.add_argument("--repeat", type=cli.bounded_int(1, MAX_REPEAT), default=None,
                   help="interleaved repeats of ours and the reference, medians reported (quick 2, full 3)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory (broker data, tables)")
    p.add_argument("--verbose", action="store_true", help="show the framework's own log lines too")
    g = p.add_argument_group("produce and api")
    g.add_argument("--records", type=RECORDS, default=None, help="records per produce run (quick 100000, full 500000)")
    g.add_argument("--record-size", type=cli.bounded_int(1, MAX_RECORD_BYTES), default=None, metavar="BYTES",
                   help="synthetic record size for produce and sweep (default: natural metrics records, ~56 B)")
    g = p.add_argument_group("consume")
    g.add_argument("--consume-records", type=RECORDS, default=None,
                   help="records in the topic (quick 300000, full 2000000)")
    g.add_argument("--consume-repeat", type=cli.bounded_int(1, MAX_REPEAT),
                   default=None, help="repeats of the consume runs (quick 1, full 3)")
    g = p.add_argument_group("latency")
    g.add_argument("--latency-rate", type=cli.bounded_float(0, MAX_RATE, low_inclusive=False),
                   default=1000.0, help="records/s through the pipeline (default 1000)")
    g.add_argument("--latency-seconds", type=SECONDS, default=None, help="how long to produce (quick 20, full 60)")
    g.add_argument("--trigger-seconds", type=SECONDS, default=1.0, help="consumer trigger (default 1)")
    g.add_argument("--warmup-seconds", type=cli.bounded_float(0, MAX_SECONDS), default=3.0,
                   help="records of the first seconds left out of the latency figures (default 3)")
    g = p.add_argument_group("simulate")
    g.add_argument("--sim-runs", type=cli.bounded_int(1, MAX_SIM_RUNS),
                   default=None, help="runs of the chat simulation (quick 4, full 8)")
    g.add_argument("--sim-timesteps", type=cli.bounded_int(1, MAX_SIM_TIMESTEPS),
                   default=None, help="timesteps per run (quick 4000, full 8000)")
    g.add_argument("--no-sim-spark", action="store_true", help="skip the Spark (1 and 2 executors) measurements")
    g = p.add_argument_group("sweep (each takes a comma-separated list)")
    g.add_argument("--brokers", type=cli.bounded_list(1, MAX_BROKERS), default=None,
                   help="Kafka broker counts; a local cluster is started for each other than the benchmark's own "
                        "(PIPELINE_BROKER_COUNT) (default 1,3)")
    g.add_argument("--replication-factor", type=cli.bounded_list(1, MAX_BROKERS),
                   default=None, help="topic replication factors (default 1,3)")
    g.add_argument("--min-insync-replicas", type=cli.bounded_list(1, MAX_BROKERS),
                   default=None, help="topic min.insync.replicas (default 1,2)")
    g.add_argument("--partitions", type=cli.bounded_list(1, MAX_PARTITIONS),
                   default=None, help="topic partitions (quick 3, full 1,3)")
    g.add_argument("--batch-size", type=cli.bounded_list(1),
                   default=None, help="producer batch.size in bytes (quick 65536, full 16384,65536)")
    g.add_argument("--linger-ms", type=cli.bounded_list(0, MAX_LINGER_MS),
                   default=None, help="producer linger.ms (quick 0, full 0,20)")
    g.add_argument("--compression", default=None, help="none, gzip, snappy, lz4, zstd (default none)")
    g.add_argument("--acks", default=None, help="0, 1, all (default 1,all)")
    g.add_argument("--sweep-records", type=RECORDS, default=None, help="records per point (quick 30000, full 100000)")
    g.add_argument("--rate", type=cli.bounded_float(0, MAX_RATE), default=0.0,
                   help="records/s the synthetic feed offers at each point (default 0: as fast as possible)")
    g.add_argument("--latency-budget-ms", type=cli.bounded_float(0, MAX_SECONDS * 1000, low_inclusive=False),
                   default=250.0,
                   help="p99 a recommended configuration must keep (default 250)")
    g.add_argument("--no-sweep-reference", action="store_true",
                   help="do not run kafka-producer-perf-test at each sweep point")
    g = p.add_argument_group("jdbc")
    g.add_argument("--jdbc-records", type=RECORDS, default=None,
                   help="rows per JDBC write, sink and plain df.write.jdbc (quick 100000, full 500000)")
    g.add_argument("--jdbc-repeat", type=cli.bounded_int(1, MAX_REPEAT), default=None,
                   help="interleaved rounds of the sink and df.write.jdbc, medians reported (quick 3, full 5)")
    g = p.add_argument_group("dashboard")
    g.add_argument("--dashboard-loads", type=cli.bounded_int(1, MAX_REPEAT), default=None,
                   help="cold-cache page loads in chromium, median reported (quick 3, full 5)")
    g = p.add_argument_group("iceberg and trino")
    g.add_argument("--query-runs", type=cli.bounded_int(1, MAX_REPEAT), default=20,
                   help="rounds of the seeds' and the demo's statements per "
                        "engine (default 20)")
    g.add_argument("--game-events", type=RECORDS, default=None,
                   help="game events behind the queried Iceberg tables (quick 5000, full 20000)")
    g.add_argument("--iceberg-records", type=RECORDS, default=None,
                   help="records the Iceberg consumer and the batch append read (quick 100000, full 500000)")
    g = p.add_argument_group("profile")
    g.add_argument("--profile-records", type=RECORDS, default=None,
                   help="records per profile run (quick 30000, full 200000)")
    g.add_argument("--processes", type=cli.bounded_list(1, MAX_PROCESSES),
                   default=None, help="producer process counts to try (quick 1,2, full 1,2,3)")
    return p


def options_from_args(args: argparse.Namespace, settings: Settings) -> BenchOptions:
    """Turn the parsed flags into :class:`BenchOptions` (every value checked before anything starts)."""
    from bench.errors import BenchError

    mode = 0 if args.quick else 1

    def pick(name: str):
        value = getattr(args, name, None)
        return DEFAULTS[name][mode] if value is None else value

    for name in ("repeat", "records", "consume_records", "consume_repeat", "sweep_records", "profile_records",
                 "sim_runs", "sim_timesteps", "jdbc_records", "jdbc_repeat", "dashboard_loads", "game_events",
                 "iceberg_records", "query_runs"):
        if pick(name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be at least 1, not {pick(name)}.")
    base = QUICK_GRID if args.quick else FULL_GRID
    grid = SweepGrid(
        partitions=args.partitions or base.partitions,
        batch_size=args.batch_size or base.batch_size,
        linger_ms=args.linger_ms or base.linger_ms,
        compression=parse_values(args.compression, "--compression", str) if args.compression else base.compression,
        acks=parse_values(args.acks, "--acks", str) if args.acks else base.acks,
        brokers=args.brokers or base.brokers,
        replication_factor=args.replication_factor or base.replication_factor,
        min_insync_replicas=args.min_insync_replicas or base.min_insync_replicas)
    grid.check()
    out = args.out or Path("bench_results") / time.strftime("%Y%m%d-%H%M%S")
    argv = " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("bench_cmd.py") else ""
    return BenchOptions(
        sections=check_sections([s.strip() for s in args.only.split(",") if s.strip()]),
        out_dir=out, quick=args.quick, keep=args.keep,
        command=f"python cmd/bench_cmd.py {argv}".strip(),
        produce=ProduceOptions(records=pick("records"), repeat=pick("repeat"), partitions=settings.topic_partitions,
                               record_size=args.record_size),
        consume=ConsumeOptions(records=pick("consume_records"), repeat=pick("consume_repeat"),
                               partitions=settings.topic_partitions),
        latency=LatencyOptions(rate=args.latency_rate, seconds=pick("latency_seconds"), trigger=args.trigger_seconds,
                               warmup=args.warmup_seconds, partitions=settings.topic_partitions),
        sweep=SweepOptions(grid=grid, records=pick("sweep_records"), record_size=args.record_size, rate=args.rate,
                           reference=not args.no_sweep_reference, latency_budget_ms=args.latency_budget_ms),
        simulate=SimulateOptions(runs=pick("sim_runs"), timesteps=pick("sim_timesteps"), spark=not args.no_sim_spark),
        jdbc=JdbcOptions(records=pick("jdbc_records"), repeat=pick("jdbc_repeat")),
        dashboard=DashboardOptions(loads=pick("dashboard_loads")),
        query=QueryOptions(runs=args.query_runs, game_events=pick("game_events"),
                           consume_records=pick("iceberg_records"), repeat=1 if args.quick else pick("repeat")),
        profile=ProfileOptions(records=pick("profile_records"), processes=tuple(pick("processes"))))


def _main(args: argparse.Namespace, settings: Settings) -> int:
    options = options_from_args(args, settings)
    grid_points = len(options.sweep.grid.points())
    if not args.verbose:
        _bench_logging(settings.log_level)
    from framework.log import get_logger

    get_logger("bench").info("Benchmark: sections {} ({} mode{}); results into {}", ", ".join(options.sections),
                             "quick" if options.quick else "full",
                             f", {grid_points} sweep points" if "sweep" in options.sections else "", options.out_dir)
    from bench.errors import BenchInterrupted
    from framework.signals import StopSignals

    def interrupt() -> None:  # the sections block in Kafka, Spark and HTTP calls: cut them short at once
        from bench.runner import INTERRUPTED

        INTERRUPTED.set()
        raise KeyboardInterrupt

    with StopSignals(interrupt, "the benchmark", "now, and everything it started") as signals:
        try:
            report = run_bench(settings, options)
        except BenchInterrupted as stop:
            print(f"stopped by {signals.received or 'SIGINT'}: {stop.sentence()}", file=sys.stderr)
            return signals.exit_code if signals.received else 130
    print(report.markdown())
    print(f"Saved {options.out_dir / 'results.json'} and {options.out_dir / 'results.md'}"
          + (f" and {options.out_dir / report.plots[0]}" if report.plots else ""))
    sys.stdout.flush()
    return 1 if report.errors else 0


def _bench_logging(level: str) -> None:
    """One stderr sink: the benchmark's progress, and warnings or worse from everything else."""
    from loguru import logger

    from framework.log import FORMAT

    threshold = logger.level(level.upper()).no
    logger.remove()
    logger.add(sys.stderr, format=FORMAT, level=level.upper(), backtrace=False, diagnose=False,
               filter=lambda r: r["extra"].get("component") == "bench" or r["level"].no >= max(threshold, 30))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), _main, argv)
