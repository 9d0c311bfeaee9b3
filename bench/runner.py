"""Run the selected benchmark sections in one environment and collect one :class:`BenchReport`.

Sections, in the order they run: ``produce``, ``api`` (both share one
interleaved loop), ``consume``, ``latency``, ``simulate``, ``sweep``, ``profile``, ``jdbc`` (the PostgreSQL sink),
``dashboard`` (its first load in chromium), ``iceberg`` (the Iceberg consumer, ``pipeline query`` against
``--engine spark``) and ``trino`` (warm Trino against DuckDB). A section
that fails is recorded in the report (``errors``) and the others still run. Ctrl-C stops
everything the run started (broker, Spark, API processes), saves the finished sections and
raises :class:`~bench.errors.BenchInterrupted`.
"""
from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.apiserver import STOPPED_BY_INTERRUPT
from bench.consume import ConsumeOptions, run_consume
from bench.dashboard import DashboardOptions, run_dashboard
from bench.environment import BenchEnvironment
from bench.errors import BenchError, BenchInterrupted
from bench.jdbc import JdbcOptions, run_jdbc
from bench.latency import LatencyOptions, run_latency
from bench.produce import ProduceOptions, run_produce_and_api
from bench.profile import ProfileOptions, run_profile
from bench.query import QueryOptions, run_iceberg, run_trino
from bench.report import BenchReport
from bench.simulate import SimulateOptions, run_simulate
from bench.sweep import SweepOptions, run_sweep
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("bench")

#: set by the command's Ctrl-C handler: a section that swallows the KeyboardInterrupt (a producer stops
#: gracefully on it) still ends the run after that section
INTERRUPTED = threading.Event()

SECTIONS = ("produce", "api", "consume", "latency", "simulate", "sweep", "profile", "jdbc", "dashboard", "iceberg",
            "trino")
PLOT_FILE = "sweep.png"


@dataclass(frozen=True)
class BenchOptions:
    """Everything a run needs besides the settings (the command builds it from its flags)."""

    sections: tuple[str, ...]
    out_dir: Path
    produce: ProduceOptions
    consume: ConsumeOptions
    latency: LatencyOptions
    sweep: SweepOptions
    profile: ProfileOptions
    jdbc: JdbcOptions = JdbcOptions()
    quick: bool = False
    keep: bool = False
    command: str = "python cmd/bench_cmd.py"
    extra: dict = field(default_factory=dict)
    simulate: SimulateOptions = field(default_factory=SimulateOptions)
    dashboard: DashboardOptions = DashboardOptions()
    query: QueryOptions = QueryOptions()


def check_sections(names: list[str]) -> tuple[str, ...]:
    """The sections named (in run order); :class:`BenchError` lists the valid ones for an unknown name."""
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise BenchError(f"Unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}.")
    if not names:
        raise BenchError(f"--only needs at least one section: {', '.join(SECTIONS)}.")
    return tuple(s for s in SECTIONS if s in names)


def run_bench(settings: Settings, options: BenchOptions) -> BenchReport:
    """Start the environment, run every selected section, stop everything, save and return the report."""
    started = time.monotonic()
    report = BenchReport(started=time.strftime("%Y-%m-%d %H:%M:%S"), command=options.command,
                         environment=_machine(settings))
    env = BenchEnvironment(settings, keep=options.keep)
    where = "the start of the local Kafka broker"
    finished = 0
    try:
        with env:
            report.environment["kafka"] = (f"local broker {settings.kafka_version}" if env.broker
                                           else f"cluster at {settings.bootstrap_servers}")
            selected = options.sections
            steps = [s for s in selected if s != "api" or "produce" not in selected]
            for number, section in enumerate(steps, start=1):
                title = "produce + api" if section == "produce" and "api" in selected else section
                where = f"section {number}/{len(steps)} ({title})"
                log.info("=== section {}/{}: {} ===", number, len(steps), title)
                began = time.monotonic()
                try:
                    _run_section(section, env, options, report)
                except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
                    if INTERRUPTED.is_set():
                        raise KeyboardInterrupt from None
                    report.errors[title] = f"{type(exc).__name__}: {exc}"
                    log.opt(exception=exc).error("Section {} failed: {}", title, exc)
                if INTERRUPTED.is_set():
                    raise KeyboardInterrupt
                log.info("=== {} done in {:.0f} s ===", title, time.monotonic() - began)
                finished += 1
    except KeyboardInterrupt:  # Ctrl-C: `with env` has stopped the broker, Spark and the APIs
        saved = None
        if finished:
            report.errors[where] = "interrupted"
            report.elapsed_s = time.monotonic() - started
            saved, _ = report.save(options.out_dir)
        raise BenchInterrupted(where, STOPPED_BY_INTERRUPT + env.stopped, saved) from None
    report.environment["load average after"] = _load()
    report.elapsed_s = time.monotonic() - started
    report.save(options.out_dir)
    return report


def _run_section(section: str, env: BenchEnvironment, options: BenchOptions, report: BenchReport) -> None:
    selected = options.sections
    if section in ("produce", "api"):
        run_produce_and_api(env, options.produce, report, produce="produce" in selected, api="api" in selected)
    elif section == "consume":
        run_consume(env, options.consume, report)
    elif section == "latency":
        run_latency(env, options.latency, report)
    elif section == "simulate":
        run_simulate(env, options.simulate, report)
    elif section == "sweep":
        run_sweep(env, options.sweep, report, plot_path=options.out_dir / PLOT_FILE)
    elif section == "profile":
        run_profile(env, options.profile, report)
    elif section == "jdbc":
        run_jdbc(env, options.jdbc, report)
    elif section == "dashboard":
        run_dashboard(env, options.dashboard, report)
    elif section == "iceberg":
        run_iceberg(env, options.query, report)
    elif section == "trino":
        run_trino(env, options.query, report)


def _machine(settings: Settings) -> dict[str, str]:
    import kafka
    import pyspark

    from bench.clients import confluent_available

    return {"cores": str(os.cpu_count()), "load average before": _load(), "python": platform.python_version(),
            "kafka-python": kafka.__version__, "pyspark": pyspark.__version__, "spark": settings.spark_master,
            "confluent-kafka": "available" if confluent_available() else "not installed"}


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
