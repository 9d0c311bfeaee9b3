"""``python cmd/consume_cmd.py <name> [--bounded]``: run a Spark consumer; ``--list`` shows them.

Consumers are found in ``apps.consumers``, in the modules given with
``--module`` (repeatable) and in the ``pipeline.consumers`` entry-point group.
SIGINT and SIGTERM stop the streaming queries cleanly (a second signal
forces the exit); the command then prints the summary: per topic the rows
written, the rows quarantined and the consumer lag, the output paths and the
throughput.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from framework import cli
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.consumer.failures import check_output_dirs, reported_failures
from framework.log import get_logger
from framework.settings import Settings
from framework.signals import StopSignals

log = get_logger("consume")

BUILTIN_MODULE = "apps.consumers"


def discover(modules: Sequence[str] = ()) -> None:
    """Import the shipped consumers, ``modules`` and the ``pipeline.consumers`` entry points."""
    CONSUMERS.discover(modules, builtin=BUILTIN_MODULE)


def install_signal_handlers(consumer: ConsumerSparkABC) -> StopSignals:
    """SIGINT/SIGTERM -> ``consumer.stop()`` (a second one raises KeyboardInterrupt); call ``.restore()`` after.

    Only the main thread may install handlers, so only a command's entry point
    calls this; the handler survives the start of Spark (see :mod:`framework.signals`).
    """
    return StopSignals(consumer.stop, f"consumer {consumer.name!r}").install()


def _main(args: argparse.Namespace, settings: Settings) -> int:
    discover(args.module)
    if args.list:
        for _, cls in CONSUMERS.items():
            print(cls.describe(settings))
        return 0
    if not args.name:
        print(f"error: name a consumer to run; available: {', '.join(CONSUMERS.names()) or 'none'} "
              "(--list shows their topics and writers).", file=sys.stderr)
        return 2
    cls = CONSUMERS.get(args.name)  # RegistryError lists the available names
    check_output_dirs(settings)
    consumer = cls(settings, max_offsets_per_trigger=args.max_offsets_per_trigger)
    signals = install_signal_handlers(consumer)
    try:
        with reported_failures(f"consumer {consumer.name!r}", settings.state_dir):
            summary = consumer.run(mode="bounded" if args.bounded else "continuous", timeout=args.timeout)
        print(summary.text(), flush=True)
    finally:
        signals.restore()
        consumer.close()
    if signals.received:
        print(f"stopped by {signals.received}: the last batch was completed or not committed; the next run "
              "resumes from the last committed batch", file=sys.stderr)
        return signals.exit_code
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Consume Kafka topics with a Spark consumer and write them (Parquet, console, ...).")
    p.add_argument("name", nargs="?", help="consumer to run (see --list)")
    p.add_argument("--list", action="store_true", help="list the consumers with their topics and writer")
    p.add_argument("--module", action="append", default=[], metavar="MODULE",
                   help="import MODULE (dotted name) to find user consumers; repeatable")
    p.add_argument("--bounded", action="store_true",
                   help="process everything in Kafka now, then stop and print the counts (default: run until "
                        "Ctrl-C, a micro-batch every PIPELINE_TRIGGER_SECONDS)")
    p.add_argument("--max-offsets-per-trigger", type=cli.bounded_int(0), default=None, metavar="N",
                   help="records per micro-batch at most; 0 = no limit (default: PIPELINE_MAX_OFFSETS_PER_TRIGGER)")
    p.add_argument("--timeout", type=cli.bounded_float(0, 10**9, low_inclusive=False), default=None,
                   metavar="SECONDS",
                   help="stop after SECONDS (default: no timeout)")
    return cli.run(p, _main, argv)
