"""What every command in ``cmd/`` shares: ``--log-level``, settings, clean errors.

A command is a ``main(args, settings) -> int`` function run through :func:`run`:
settings are loaded (and checked) before anything connects, a
:class:`~framework.errors.FrameworkError` becomes one sentence on stderr and
exit code 2, Ctrl-C becomes exit code 130.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from framework.errors import FrameworkError
from framework.log import configure_logging
from framework.settings import Settings

SETTINGS_EPILOG = (
    "Defaults come from PIPELINE_* environment variables; run "
    "`python cmd/admin_cmd.py settings` to list them with their current values."
)


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every command has."""
    p = argparse.ArgumentParser(description=description, epilog=SETTINGS_EPILOG)
    p.add_argument("--log-level", default=None,
                   help="TRACE, DEBUG, INFO, WARNING or ERROR (default: PIPELINE_LOG_LEVEL or INFO)")
    return p


def run(p: argparse.ArgumentParser, main: Callable[[argparse.Namespace, Settings], int],
        argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, load settings, configure logging and call ``main``; return the exit code."""
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.log_level:
            settings = settings.replace(log_level=args.log_level.upper())
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
