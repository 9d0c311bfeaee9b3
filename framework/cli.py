"""What every command in ``cmd/`` shares: ``--log-level``, settings, clean errors.

A command is a ``main(args, settings) -> int`` function run through :func:`run`:
settings are loaded (and checked) before anything connects, a
:class:`~framework.errors.FrameworkError` becomes one sentence on stderr and
exit code 2, Ctrl-C becomes exit code 130 (commands that run Spark keep that
promise through :mod:`framework.signals`). Numeric options use
:func:`bounded_int` / :func:`bounded_float`, so a value no setting could hold
is refused by the parser, naming the option as typed.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable, Sequence

from framework.errors import FrameworkError
from framework.log import configure_logging
from framework.settings import LOG_LEVELS, MAX_INT, Settings

SETTINGS_EPILOG = (
    "Defaults come from PIPELINE_* environment variables; run "
    "`python cmd/admin_cmd.py settings` to list them with their current values."
)


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every command has."""
    p = argparse.ArgumentParser(description=description, epilog=SETTINGS_EPILOG)
    p.add_argument("--log-level", default=None, type=log_level,
                   help="TRACE, DEBUG, INFO, WARNING or ERROR (default: PIPELINE_LOG_LEVEL or INFO)")
    return p


def log_level(text: str) -> str:
    """``--log-level`` value, upper-cased; an unknown one is refused naming the flag as the user typed it."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"--log-level {text} is not a log level; use one of "
                                         f"{', '.join(LOG_LEVELS)}")
    return level


def bounded_int(low: int, high: int = MAX_INT) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, refused with one sentence otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {low} to {high}")
        return value
    return parse


def bounded_float(low: float, high: float, low_inclusive: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: a finite number from ``low`` to ``high`` (seconds, factors)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = (value >= low if low_inclusive else value > low) and value <= high
        if not math.isfinite(value) or not ok:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; use a number {'from' if low_inclusive else 'above'} {low:g} to {high:g}")
        return value
    return parse


def run(p: argparse.ArgumentParser, main: Callable[[argparse.Namespace, Settings], int],
        argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load settings, configure logging and call ``main``; return the exit code."""
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.log_level:
            settings = settings.replace(log_level=args.log_level)
    except FrameworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return int(main(args, settings) or 0)
    except FrameworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
