"""``python cmd/query_cmd.py "SELECT ..."``: SQL over the Iceberg tables and the Parquet tables.

Default engine: embedded DuckDB (:mod:`framework.query.duck`), answers at once;
``--engine spark`` starts Spark; ``--engine trino`` sends the statements to Trino
(:mod:`framework.query.trino_engine`). Every Iceberg table of the catalog's namespace
and every Parquet table directory under ``PIPELINE_OUTPUT_DIR`` (one per topic,
plus its ``<topic>_quarantine``) is a table under its name, so
``SELECT id, avg(val) FROM metrics GROUP BY id`` works as written. Without a
statement (and on a terminal) an interactive prompt opens; ``-f file.sql`` runs
a file.
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from framework import cli
from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import Settings
from framework.signals import StopSignals

log = get_logger("query")


from framework.query.duck import QueryError  # noqa: E402 - one error class for every engine
from framework.query.tables import WAREHOUSE_DIR, format_table, table_dirs  # noqa: E402,F401 - re-exported

def register_tables(spark: Any, output_dir: Path) -> dict[str, Path]:
    """Register each table of ``output_dir`` as a temporary view (columns of all files merged); return them."""
    tables = table_dirs(output_dir)
    for name, path in tables.items():
        spark.read.option("mergeSchema", "true").parquet(str(path.resolve())).createOrReplaceTempView(name)
    return tables


class SparkEngine:
    """``--engine spark``: Spark SQL with the Iceberg catalog's namespace as the current database and the
    Parquet tables as temporary views (a Parquet view shadows an Iceberg table of the same name)."""

    name = "spark"

    def __init__(self, settings: Settings, output_dir: Path) -> None:
        from framework.sinks.iceberg_catalog import ensure_catalog_database, spark_catalog_conf
        from framework.spark import build_spark_session

        self.settings = settings
        self.spark = build_spark_session(settings, app_name="query")
        self.iceberg: list[str] = []
        try:
            for key, value in spark_catalog_conf(settings, ensure_catalog_database(settings)).items():
                self.spark.conf.set(key, value)
            namespace = f"{settings.iceberg_catalog}.{settings.iceberg_namespace}"
            self.iceberg = [r["tableName"] for r in self.spark.sql(f"SHOW TABLES IN {namespace}").collect()]
            self.spark.sql(f"USE {namespace}")
        except FrameworkError as exc:
            log.warning("No Iceberg tables: {}", exc)
        except Exception as exc:  # noqa: BLE001 - no namespace yet
            log.debug("No Iceberg namespace: {}", exc)
        self.parquet = register_tables(self.spark, output_dir)

    def tables(self) -> dict[str, str]:
        out = {name: f"iceberg {self.settings.iceberg_catalog}.{self.settings.iceberg_namespace}.{name}"
               for name in self.iceberg}
        out.update({name: f"parquet {path}" for name, path in self.parquet.items()})
        return dict(sorted(out.items()))

    def execute(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        # Ctrl-C cancels the running Spark jobs from another thread (a Py4J call inside the signal
        # handler would be reentrant, see framework.signals), then the command exits with 130
        spark = self.spark
        cancel = StopSignals(lambda: threading.Thread(target=spark.sparkContext.cancelAllJobs, daemon=True).start(),
                             "the query", "now, cancelling its Spark jobs")
        with cancel:
            try:
                df = spark.sql(sql)
                rows = [tuple(r) for r in (df.limit(limit) if limit else df).collect()]
            except Exception as exc:  # noqa: BLE001 - AnalysisException, ParseException: one sentence for the user
                if cancel.received:
                    print(f"stopped by {cancel.received}: the query was cancelled", file=sys.stderr)
                    raise KeyboardInterrupt from None
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise QueryError(f"The query failed: {first} (tables: {', '.join(self.tables())}).") from None
        return df.columns, rows

    def close(self) -> None:
        self.spark.stop()


def open_engine(name: str, settings: Settings, output_dir: Path) -> Any:
    """The engine called ``name`` (duckdb, spark or trino), ready to run statements."""
    if name == "spark":
        return SparkEngine(settings, output_dir)
    if name == "trino":
        from framework.query.trino_engine import TrinoEngine

        return TrinoEngine(settings)
    from framework.query.duck import DuckEngine

    return DuckEngine(settings, output_dir)


def _main(args: argparse.Namespace, settings: Settings) -> int:
    from framework.query.shell import interactive, run_statements, split_statements

    output_dir = Path(args.output_dir or settings.output_dir)
    engine = open_engine(args.engine, settings, output_dir)
    try:
        if args.tables:
            for name, where in engine.tables().items():
                print(f"{name}\t{where}")
            return 0
        if args.file:
            statements = split_statements(Path(args.file).read_text())
        elif args.sql:
            statements = split_statements(args.sql)
        elif sys.stdin.isatty():
            return interactive(engine, Path(settings.state_dir) / "query_history", args.format, args.limit)
        else:
            statements = split_statements(sys.stdin.read())
        if not statements:
            raise QueryError("Give a SQL statement, e.g. \"SELECT count(*) FROM metrics\"; tables: "
                             + (", ".join(engine.tables()) or "none") + ".")
        run_statements(engine, statements, args.format, args.limit)
        return 0
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Run SQL over the pipeline's tables (Iceberg tables of the catalog and Parquet table "
                   "directories): statements separated by ';', from the argument, -f FILE, stdin, or a prompt.")
    p.add_argument("sql", nargs="?", help='e.g. "SELECT id, avg(val) AS mean FROM metrics GROUP BY id"')
    p.add_argument("-f", "--file", default=None, help="run the statements of this .sql file")
    p.add_argument("--engine", choices=["duckdb", "spark", "trino"], default="duckdb",
                   help="duckdb (default: embedded, answers at once), spark (starts Spark) or trino (Iceberg tables "
                        "only; PIPELINE_TRINO_URL, or the local Trino, started when needed and left running)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--limit", type=cli.bounded_int(0), default=1000, help="at most this many rows (default 1000)")
    p.add_argument("--output-dir", default=None, help="Parquet tables directory (default PIPELINE_OUTPUT_DIR)")
    p.add_argument("--tables", action="store_true", help="list the tables and exit")
    return cli.run(p, _main, argv)
