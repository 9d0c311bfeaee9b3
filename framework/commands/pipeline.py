"""``pipeline SUBCOMMAND [ARGS...]``: the console entry point (``setup.py`` ``console_scripts``).

Looks ``SUBCOMMAND`` up in :data:`framework.commands.SUBCOMMANDS`, imports that module only then,
and returns its ``main(ARGS)``: ``pipeline produce --list`` is ``python cmd/produce_cmd.py --list``.
Exit codes are the subcommand's; an unknown subcommand is exit code 2 with a one-sentence error.

``bench`` is not part of the installed package: it is found in the source checkout the
framework was installed from (``pip install -e .``) or in the current directory.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Sequence

from framework.cli import SETTINGS_EPILOG
from framework.commands import SUBCOMMAND_HELP, SUBCOMMANDS

Main = Callable[[Sequence[str] | None], int]

DESCRIPTION = "Streaming pipelines: HTTP JSON streams -> Apache Kafka -> Spark Structured Streaming -> tables."


class SubcommandError(Exception):
    """A subcommand is unknown or cannot be loaded; the message is one sentence for the user."""


def load(name: str) -> Main:
    """The ``main`` function of subcommand ``name``; :class:`SubcommandError` when it is unknown or missing."""
    target = SUBCOMMANDS.get(name)
    if target is None:
        close = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SubcommandError(f"Unknown subcommand {name!r}; {hint}subcommands: {', '.join(SUBCOMMANDS)}.")
    module_name, _, attr = target.partition(":")
    top = module_name.split(".")[0]
    if top == "bench":
        _make_bench_importable()
    module = importlib.import_module(module_name)
    main: Main = getattr(module, attr or "main")
    return main


def _make_bench_importable() -> None:
    """Put the source checkout holding ``bench/`` on ``sys.path`` (it is not installed with the package)."""
    framework_root = Path(__file__).resolve().parents[2]  # <checkout>/framework/commands/pipeline.py
    for root in (framework_root, Path.cwd()):
        if (root / "bench" / "command.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return
    spec = importlib.util.find_spec("bench.command") if importlib.util.find_spec("bench") else None
    if spec is None:
        raise SubcommandError("The benchmarks live in bench/ of a source checkout, not in the installed package; "
                              "run `pipeline bench` (or `python cmd/bench_cmd.py`) from a clone of the project.")


def _help(name: str) -> str:
    if name in SUBCOMMAND_HELP:
        return SUBCOMMAND_HELP[name]
    return _docstring_line(SUBCOMMANDS[name].partition(":")[0])


def _docstring_line(module_name: str) -> str:
    """The first line of a module's docstring, read without importing the module ("" when unknown)."""
    import ast

    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return ""
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    """The text of ``pipeline --help``: every subcommand with its one-line help."""
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: pipeline SUBCOMMAND [ARGS...]", "", DESCRIPTION, "", "subcommands:"]
    lines += [f"  {name:<{width}}  {_help(name)}".rstrip() for name in SUBCOMMANDS]
    lines += ["", "`pipeline SUBCOMMAND --help` shows the options of one subcommand.", SETTINGS_EPILOG]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pipeline`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    try:
        sub_main = load(name)
    except SubcommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # argparse names the program after sys.argv[0]: show `pipeline produce` in usage lines and errors.
    saved = sys.argv[0] if sys.argv else ""
    if sys.argv:
        sys.argv[0] = f"pipeline {name}"
    try:
        return int(sub_main(rest) or 0)
    finally:
        if sys.argv:
            sys.argv[0] = saved


if __name__ == "__main__":
    sys.exit(main())
