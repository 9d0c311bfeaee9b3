"""``python cmd/produce_cmd.py NAME... | --all | --list``: run registered producers.

Producers are found in ``apps.producers`` and ``apps.simulations``, in the modules
given with ``--module`` (repeatable) and in the ``pipeline.producers`` entry-point
group. ``--all`` runs every HTTP-stream producer; simulation producers
(:class:`~framework.producer.simulation.SimulationProducerABC`) run by name, locally
or with ``--spark`` as a Spark job (:mod:`framework.producer.distributed`), and
``--runs N`` overrides their model's number of runs. Several
producers run concurrently, one thread each. SIGINT/SIGTERM stop them: each
flushes what it sent and the command prints the summaries and exits 0.

The command never starts Kafka: with the embedded default it expects the local
broker to be running already (the main job, ``python cmd/run_cmd.py``, or
``python cmd/broker_cmd.py start`` start it) and says so when Kafka does not answer.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Sequence

from framework import cli
from framework.admin import kafka_answers
from framework.errors import KafkaUnavailableError, RegistryError
from framework.log import get_logger
from framework.producer.base import PRODUCERS, ProducerABC
from framework.producer.simulation import SimulationProducerABC
from framework.producer.summary import ProduceSummary
from framework.registry import load_module
from framework.settings import MAX_DELAY_SECONDS, Settings

MAX_RUNS = 1_000_000  # simulation runs of one --runs

log = get_logger("produce")


@dataclass
class Outcome:
    """What one producer thread ended with."""

    producer: ProducerABC
    summary: ProduceSummary | None = None
    error: BaseException | None = None


def build_parser() -> argparse.ArgumentParser:
    p = cli.parser("Stream HTTP NDJSON endpoints, or publish cadCAD simulations, into Kafka topics, exactly once "
                   "across restarts.")
    p.add_argument("names", nargs="*", metavar="NAME", help="producers to run (see --list)")
    p.add_argument("--all", action="store_true", help="run every registered producer")
    p.add_argument("--list", action="store_true", help="print the registered producers and exit")
    p.add_argument("--module", action="append", default=[], metavar="MODULE",
                   help="import this module to register its producers (repeatable)")
    p.add_argument("--follow", action="store_true",
                   help="at the end of a stream, keep asking for new records until stopped")
    p.add_argument("--delay", type=cli.bounded_float(0, MAX_DELAY_SECONDS), default=None,
                   help="ask the API for this many seconds between records (default: the API's own); simulations: "
                        "seconds between timesteps")
    p.add_argument("--runs", type=cli.bounded_int(1, MAX_RUNS), default=None, metavar="N",
                   help="simulation producers: simulate N runs instead of the model's own number")
    p.add_argument("--spark", action="store_true",
                   help="simulation producers: publish the runs from Spark tasks (PIPELINE_SPARK_MASTER), "
                        "one task per partition, exactly once")
    return p


def run_producers(producers: Sequence[ProducerABC], install_signals: bool = True) -> list[Outcome]:
    """Run ``producers`` concurrently (one thread each) until they end; SIGINT/SIGTERM stop them all.

    Signal handlers are installed only when called from the main thread, and restored after.
    """
    outcomes = [Outcome(p) for p in producers]

    def work(outcome: Outcome) -> None:
        try:
            outcome.summary = outcome.producer.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            outcome.error = exc
            outcome.summary = outcome.producer.summary

    def stop_all(signum: int, _frame: object) -> None:
        log.info("{} received: stopping {} producer(s) after a flush", signal.Signals(signum).name, len(producers))
        for p in producers:
            p.stop()

    previous = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop_all)
    threads = [threading.Thread(target=work, args=(o,), name=f"producer-{o.producer.name}", daemon=True)
               for o in outcomes]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short joins keep the main thread responsive to signals
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcomes


def _main(args: argparse.Namespace, settings: Settings) -> int:
    load_module("apps.simulations")
    PRODUCERS.discover(args.module, builtin="apps.producers")
    if args.list:
        for name, cls in PRODUCERS.items():
            key = f"key {cls.key_field}" if cls.key_field else "no key"
            print(f"{name:<16} {cls.source_description()} -> {cls.topic} ({key})  "
                  f"[{cls.__module__}.{cls.__qualname__}]")
        return 0
    names = ([n for n, c in PRODUCERS.items() if not issubclass(c, SimulationProducerABC)] if args.all
             else list(dict.fromkeys(args.names)))
    if not names:
        raise RegistryError(f"Name the producers to run or use --all; available: "
                            f"{', '.join(PRODUCERS.names()) or 'none'}.")
    classes = [PRODUCERS.get(name) for name in names]
    simulations = [c for c in classes if issubclass(c, SimulationProducerABC)]
    if (args.spark or args.runs is not None) and len(simulations) != len(classes):
        other = next(c.name for c in classes if c not in simulations)
        raise RegistryError(f"--spark and --runs apply to simulation producers only, and {other!r} reads an HTTP "
                            "stream; run it without them.")
    if args.runs is not None and args.runs < 1:
        raise RegistryError(f"--runs must be at least 1, not {args.runs}.")
    if not kafka_answers(settings.bootstrap_servers, timeout=5.0):
        hint = ("start the local broker first (the main job `python cmd/run_cmd.py` does, or "
                "`python cmd/broker_cmd.py start`)" if settings.uses_local_broker
                else "check PIPELINE_KAFKA_BOOTSTRAP_SERVERS and that the cluster is up")
        raise KafkaUnavailableError(f"Kafka at {settings.bootstrap_servers} does not answer; {hint}.")
    if args.spark:
        from framework.producer.distributed import publish_on_spark

        failed = 0
        for sim in simulations:  # all of classes, in order (checked above)
            result = publish_on_spark(sim, settings, runs=args.runs)
            print(result.line())
            failed += bool(result.errors)
            for error in result.errors:
                print(f"error: {sim.name}: {error}", file=sys.stderr)
        sys.stdout.flush()
        return 2 if failed else 0
    extra = {"runs": args.runs} if args.runs is not None else {}
    producers = [cls(settings, follow=args.follow, delay=args.delay,
                     **(extra if issubclass(cls, SimulationProducerABC) else {})) for cls in classes]
    outcomes = run_producers(producers)
    failed = 0
    for outcome in outcomes:
        if outcome.summary is not None:
            print(outcome.summary.line())
        if outcome.error is not None:
            failed += 1
            print(f"error: {outcome.producer.name}: {outcome.error}", file=sys.stderr)
    sys.stdout.flush()
    return 2 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), _main, argv)
