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
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from framework import cli
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("consume")

BUILTIN_MODULE = "apps.consumers"


def discover(modules: Sequence[str] = ()) -> None:
    """Import the shipped consumers, ``modules`` and the ``pipeline.consumers`` entry points."""
    CONSUMERS.discover(modules, builtin=BUILTIN_MODULE)


def install_signal_handlers(consumer: ConsumerSparkABC) -> Callable[[], None]:
    """SIGINT/SIGTERM -> ``consumer.stop()`` (a second one raises KeyboardInterrupt); returns a restorer.

    Only the main thread may install handlers, so only a command's entry point calls this.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        if consumer.stopping:
            raise KeyboardInterrupt
        log.warning("Received {}: stopping the streaming queries (send it again to force)",
                    signal.Signals(signum).name)
        consumer.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return restore


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
    consumer = cls(settings, max_offsets_per_trigger=args.max_offsets_per_trigger)
    restore = install_signal_handlers(consumer)
    try:
        summary = consumer.run(mode="bounded" if args.bounded else "continuous", timeout=args.timeout)
        print(summary.text(), flush=True)
    finally:
        restore()
        consumer.close()
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
    p.add_argument("--max-offsets-per-trigger", type=int, default=None, metavar="N",
                   help="records per micro-batch at most; 0 = no limit (default: PIPELINE_MAX_OFFSETS_PER_TRIGGER)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after SECONDS (default: no timeout)")
    return cli.run(p, _main, argv)
