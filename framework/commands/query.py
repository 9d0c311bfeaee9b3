"""``python cmd/query_cmd.py "SELECT ..."``: Spark SQL over the Parquet tables of the output directory.

Every table directory under ``PIPELINE_OUTPUT_DIR`` (one per topic, plus its
``<topic>_quarantine``) is registered as a view under its directory name, so
``SELECT id, avg(val) FROM metrics GROUP BY id`` works as written.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Sequence

from framework import cli
from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("query")


class QueryError(FrameworkError):
    """A SQL statement could not be run."""


def table_dirs(output_dir: Path) -> dict[str, Path]:
    """``{view name: directory}`` for each table directory holding Parquet files under ``output_dir``."""
    tables = {}
    if output_dir.is_dir():
        for d in sorted(output_dir.iterdir()):
            if d.is_dir() and not d.name.startswith(("_", ".")) and any(d.rglob("*.parquet")):
                tables[d.name.replace("-", "_").replace(".", "_")] = d
    return tables


def register_tables(spark: Any, output_dir: Path) -> dict[str, Path]:
    """Register each table of ``output_dir`` as a temporary view; return them."""
    tables = table_dirs(output_dir)
    for name, path in tables.items():
        spark.read.parquet(str(path.resolve())).createOrReplaceTempView(name)
    return tables


def format_table(columns: list[str], rows: list[tuple]) -> str:
    """A plain text table, numbers right-aligned and shown exactly (a double as its ``repr``, a decimal as its text)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row[i], (int, float, Decimal)) or row[i] is None for row in rows) and rows
               for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(columns), sep] + [line(r) for r in cells])


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same double: nothing rounded away
    return str(value)  # Decimal's str is exact too


def _main(args: argparse.Namespace, settings: Settings) -> int:
    from framework.spark import build_spark_session

    output_dir = Path(args.output_dir or settings.output_dir)
    if not table_dirs(output_dir):
        raise QueryError(f"No Parquet tables under {output_dir}; run the pipeline first (`make run`) "
                         "or point --output-dir / PIPELINE_OUTPUT_DIR at its output.")
    spark = build_spark_session(settings, app_name="query")
    try:
        tables = register_tables(spark, output_dir)
        if args.tables:
            for name, path in tables.items():
                print(f"{name}\t{path}")
            return 0
        if not args.sql:
            raise QueryError("Give a SQL statement, e.g. \"SELECT count(*) FROM metrics\"; tables: "
                             + ", ".join(tables) + ".")
        try:
            df = spark.sql(args.sql)
            rows = [tuple(r) for r in df.limit(args.limit).collect()]
        except Exception as exc:  # AnalysisException, ParseException: one sentence for the user
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QueryError(f"The query failed: {first} (tables: {', '.join(tables)}).") from None
        columns = df.columns
        if args.format == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            writer.writerows(rows)
        elif args.format == "json":
            for row in rows:
                print(json.dumps(dict(zip(columns, row)), default=str))
        else:
            print(format_table(columns, rows))
            print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
        return 0
    finally:
        spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Run a Spark SQL statement over the Parquet tables (one view per table directory).")
    p.add_argument("sql", nargs="?", help='e.g. "SELECT id, avg(val) AS mean FROM metrics GROUP BY id"')
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--limit", type=int, default=1000, help="at most this many rows (default 1000)")
    p.add_argument("--output-dir", default=None, help="tables directory (default PIPELINE_OUTPUT_DIR)")
    p.add_argument("--tables", action="store_true", help="list the tables and exit")
    return cli.run(p, _main, argv)
