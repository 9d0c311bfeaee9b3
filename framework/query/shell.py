"""Statements from a string, a file or an interactive prompt, each run by an engine and printed.

An engine is anything with ``execute(sql, limit) -> (columns, rows)``, ``tables()``
and ``close()`` (:class:`framework.query.duck.DuckEngine`, the Spark engine of
:mod:`framework.commands.query`). Statements are separated by ``;`` outside
quotes and ``--`` comments. The prompt keeps a readline history in
``<state_dir>/query_history``; ``.tables`` lists the tables, ``.quit`` (or
Ctrl-D) ends it.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from framework.errors import FrameworkError


def split_statements(text: str) -> list[str]:
    """``text`` cut at each ``;`` outside quotes and comments; blank statements dropped."""
    statements, current, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            current.append(ch)
        elif ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def complete(text: str) -> bool:
    """True when ``text`` ends a statement (its last non-blank character is a ``;`` outside quotes)."""
    stripped = text.rstrip()
    return stripped.endswith(";") and text.count("'") % 2 == 0


def print_result(columns: list[str], rows: list[tuple[Any, ...]], fmt: str, out: TextIO,
                 seconds: float | None = None) -> None:
    from framework.query.tables import format_table

    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            print(json.dumps(dict(zip(columns, row, strict=True)), default=str), file=out)
    else:
        if columns:
            print(format_table(columns, rows), file=out)
        took = f", {seconds:.2f} s" if seconds is not None else ""
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}{took})", file=out)


def run_statements(engine: Any, statements: list[str], fmt: str, limit: int, out: TextIO | None = None) -> None:
    """Run each statement in order; the first error stops (raised as it is)."""
    out = out or sys.stdout
    for sql in statements:
        t0 = time.perf_counter()
        columns, rows = engine.execute(sql, limit)
        print_result(columns, rows, fmt, out, time.perf_counter() - t0 if fmt == "table" else None)


def interactive(engine: Any, history: Path, fmt: str, limit: int,
                read: Callable[[str], str] = input, out: TextIO | None = None) -> int:
    """The prompt: statements end with ``;``; an error is printed and the prompt goes on."""
    out = out or sys.stdout
    _history(history)
    print(f"{engine.name} SQL over {len(engine.tables())} table(s); end statements with ';', "
          "'.tables' lists them, '.quit' or Ctrl-D ends.", file=out)
    for text in _inputs(read):
        if text.strip() in (".quit", ".exit"):
            break
        if text.strip() == ".tables":
            for name, where in engine.tables().items():
                print(f"{name}\t{where}", file=out)
            continue
        try:
            run_statements(engine, split_statements(text), fmt, limit, out)
        except FrameworkError as exc:
            print(f"error: {exc}", file=out)
    _save_history(history)
    return 0


def _inputs(read: Callable[[str], str]) -> Iterator[str]:
    buffer: list[str] = []
    while True:
        try:
            line = read("sql> " if not buffer else "...> ")
        except EOFError:
            if buffer:
                yield "\n".join(buffer)
            return
        if not buffer and line.strip() in (".quit", ".exit", ".tables"):
            yield line
            continue
        buffer.append(line)
        text = "\n".join(buffer)
        if complete(text):
            buffer = []
            yield text


def _history(path: Path) -> None:
    try:
        import readline
    except ImportError:  # pragma: no cover - no readline on this platform
        return
    if path.is_file():
        readline.read_history_file(str(path))
    readline.set_history_length(1000)


def _save_history(path: Path) -> None:
    try:
        import readline
    except ImportError:  # pragma: no cover
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    readline.write_history_file(str(path))
