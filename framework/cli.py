"""What every command in ``cmd/`` shares: ``--log-level``, settings, clean errors.

A command is a ``main(args, settings) -> int`` function run through :func:`run`:
settings are loaded (and checked) before anything connects, a
:class:`~framework.errors.FrameworkError` becomes one sentence on stderr and
exit code 2, Ctrl-C becomes exit code 130 (commands that run Spark keep that
promise through :mod:`framework.signals`). Every numeric option uses
:func:`bounded_int`, :func:`bounded_float`, :func:`bounded_list` or :func:`port`
(instances of :class:`Bounded`), so a value out of range (``--rate -1``,
``--runs 1e10``, ``--delay inf``, ``--port 70000``) is refused by the parser with
one sentence naming the option as typed, the value and the allowed range; exit code 2.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Any, Callable, Sequence

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


class Bounded:
    """An argparse ``type`` for a number from :attr:`low` to :attr:`high`, refused with one sentence otherwise.

    ``kind`` is ``int`` (a whole number) or ``float`` (finite; ``inf`` and ``nan`` are refused);
    ``low_inclusive=False`` excludes ``low`` itself (seconds that must be above 0). argparse prefixes
    the sentence with the option as typed: ``argument --rate: -1 is out of range; use a number from 0
    to 1e+09``. The attributes let a test check that every numeric option of every command is bounded.
    """

    def __init__(self, kind: type, low: float, high: float, low_inclusive: bool = True) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.low_inclusive = low_inclusive
        self.__name__ = "whole number" if kind is int else "number"  # what argparse calls the type

    @property
    def allowed(self) -> str:
        """The allowed range in words: ``a whole number from 1 to 65535``."""
        what = "a whole number" if self.kind is int else "a number"
        if self.low_inclusive:
            return f"{what} from {_number(self.low)} to {_number(self.high)}"
        return f"{what} above {_number(self.low)} and at most {_number(self.high)}"

    def __call__(self, text: str) -> Any:
        try:
            value = self.kind(text.strip())
        except ValueError:
            what = "a whole number" if self.kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}; use {self.allowed}") from None
        ok = math.isfinite(value) and (value >= self.low if self.low_inclusive else value > self.low) \
            and value <= self.high
        if not ok:
            raise argparse.ArgumentTypeError(f"{text} is out of range; use {self.allowed}")
        return value

    def __repr__(self) -> str:
        return f"Bounded({self.kind.__name__}, {self.low!r}, {self.high!r}, low_inclusive={self.low_inclusive})"


class BoundedList(Bounded):
    """An argparse ``type`` for a comma-separated list of whole numbers, each within bounds: ``"1,3"`` -> ``(1, 3)``."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(int, low, high)
        self.__name__ = "list of whole numbers"

    def __call__(self, text: str) -> Any:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list like 1,3")
        values = []
        for item in items:
            try:
                values.append(super().__call__(item))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{exc} (in the list {text})") from None
        return tuple(values)


def _number(value: float) -> str:
    """``1000000000`` for 1e9 and 2147483647 for MAX_INT (not ``1e+09``), ``0.5`` for 0.5."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def bounded_int(low: int, high: int = MAX_INT) -> Bounded:
    """An argparse ``type``: a whole number from ``low`` to ``high``, refused with one sentence otherwise."""
    return Bounded(int, low, high)


def bounded_float(low: float, high: float, low_inclusive: bool = True) -> Bounded:
    """An argparse ``type``: a finite number from ``low`` (or above it) to ``high`` (seconds, rates, factors)."""
    return Bounded(float, low, high, low_inclusive)


def bounded_list(low: int, high: int = MAX_INT) -> BoundedList:
    """An argparse ``type``: a comma-separated list of whole numbers from ``low`` to ``high``, as a tuple."""
    return BoundedList(low, high)


def port(allow_zero: bool = True) -> Bounded:
    """An argparse ``type``: a TCP port, 1 to 65535 (0 too when ``allow_zero``: the system picks a free one)."""
    return Bounded(int, 0 if allow_zero else 1, 65535)


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
