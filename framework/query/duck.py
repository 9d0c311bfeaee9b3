"""The default query engine: embedded DuckDB over the Iceberg tables and the Parquet tables, in-process.

Why DuckDB through pyiceberg: a statement is answered in the calling process
in well under a second (no JVM to start), and nothing is downloaded at run time
(DuckDB's own ``iceberg`` extension would be fetched on first use). The Iceberg
tables of the catalog's namespace are read with pyiceberg (the same JDBC
catalog tables in PostgreSQL that Spark and Trino use; the scan plans from the
current snapshot's manifests) into Arrow and registered in DuckDB under the
table's name, only when a statement names them; Parquet table directories of
the output directory are views over ``read_parquet(..., union_by_name=true)``,
so a column added by a later batch reads null in older files.

Names: an Iceberg table is ``<table>`` and ``<namespace>.<table>``; a Parquet
table is ``<table>`` (when no Iceberg table has that name) and ``parquet.<table>``.

Contract: :meth:`DuckEngine.execute` returns ``(columns, rows)``; a missing
table raises :class:`QueryError` listing the tables; a catalog database that
does not answer raises :class:`~framework.errors.PostgresError` within the
connection timeout (10 s).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("query")


class QueryError(FrameworkError):
    """A SQL statement could not be run."""


class DuckEngine:
    """An in-process DuckDB connection that sees the Iceberg and Parquet tables of ``settings``."""

    name = "duckdb"

    def __init__(self, settings: Settings, output_dir: Path | None = None) -> None:
        import duckdb

        self.settings = settings
        self.output_dir = Path(output_dir or settings.output_dir)
        self.con = duckdb.connect()
        self._catalog: Any = None
        self._iceberg: dict[str, str] = {}  # short name -> "namespace.table"
        self._loaded: dict[str, Any] = {}   # short name -> snapshot id registered
        self.parquet: dict[str, Path] = {}
        self._discover()

    # ------------------------------------------------------------------ tables
    def _discover(self) -> None:
        from framework.query.tables import table_dirs

        self._catalog = self._open_catalog()
        if self._catalog is not None:
            namespace = self.settings.iceberg_namespace
            try:
                identifiers = self._catalog.list_tables(namespace)
            except Exception:  # noqa: BLE001 - no such namespace yet: no Iceberg tables
                identifiers = []
            for ident in identifiers:
                self._iceberg[ident[-1]] = f"{namespace}.{ident[-1]}"
            self._declare_iceberg()
        self.parquet = table_dirs(self.output_dir)
        if self.parquet:
            self.con.execute("CREATE SCHEMA IF NOT EXISTS parquet")
        for name, path in self.parquet.items():
            source = f"read_parquet('{_sql_string(str(path.resolve()))}/**/*.parquet', union_by_name=true)"
            self.con.execute(f'CREATE OR REPLACE VIEW parquet."{name}" AS SELECT * FROM {source}')
            if name not in self._iceberg:
                self.con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM parquet."{name}"')

    def _declare_iceberg(self) -> None:
        """Every Iceberg table under its name at once, so ``SHOW TABLES`` lists them as Trino does, without
        reading any table's metadata: an empty stand-in until a statement names the table (``DESCRIBE t``
        included), when :meth:`_register` replaces it with the table's rows."""
        import pyarrow as pa

        schema = self.settings.iceberg_namespace
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        stand_in = pa.table({"not_loaded": pa.array([], pa.int8())})
        for name in self._iceberg:
            self.con.register(name, stand_in)
            self.con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS SELECT * FROM main."{name}"')

    def _open_catalog(self) -> Any:
        from framework.local.postgres import LocalPostgres
        from framework.sinks.iceberg_catalog import catalog_target, check_catalog_database, load_catalog

        if self.settings.uses_local_postgres and not LocalPostgres.from_settings(self.settings).running_pid():
            log.debug("The local PostgreSQL is not running: no Iceberg catalog, Parquet tables only")
            return None
        target = catalog_target(self.settings)
        check_catalog_database(target, timeout=10)
        return load_catalog(self.settings, target)

    def tables(self) -> dict[str, str]:
        """``{name: where}`` of every table a statement may name."""
        out = {name: f"iceberg {self.settings.iceberg_catalog}.{full}" for name, full in self._iceberg.items()}
        for name, path in self.parquet.items():
            out.setdefault(name, f"parquet {path}")
            out[f"parquet.{name}"] = f"parquet {path}"
        return dict(sorted(out.items()))

    def _register(self, sql: str) -> None:
        """Register (or refresh) the Iceberg tables ``sql`` names as Arrow tables."""
        import duckdb

        try:
            names = {n.split(".")[-1].strip('"').lower() for n in duckdb.get_table_names(sql)}
        except Exception:  # noqa: BLE001 - a statement DuckDB cannot parse fails with its own message below
            return
        for name in names & set(self._iceberg):
            table = self._catalog.load_table(self._iceberg[name])
            snapshot = table.current_snapshot()
            snapshot_id = snapshot.snapshot_id if snapshot else None
            if name in self._loaded and self._loaded[name] == snapshot_id:
                continue
            self.con.register(name, table.scan().to_arrow())
            schema = self.settings.iceberg_namespace
            self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self.con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS SELECT * FROM main."{name}"')
            self._loaded[name] = snapshot_id

    # ------------------------------------------------------------------ statements
    def execute(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement: (column names, rows); at most ``limit`` rows are fetched."""
        import duckdb

        self._register(sql)
        try:
            result = self.con.execute(sql)
            columns = [d[0] for d in result.description] if result.description else []
            rows = result.fetchmany(limit) if limit else result.fetchall()
            if limit:  # the rows past the limit: DuckDB 2 refuses register() while a result is unfinished
                getattr(result, "abort", lambda: None)()  # DuckDB 1.x has no abort() and no such rule
        except duckdb.CatalogException as exc:
            raise QueryError(f"{_first_line(exc)}; tables: {', '.join(self.tables()) or 'none'}.") from None
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {_first_line(exc)}.") from None
        return columns, rows

    def close(self) -> None:
        self.con.close()


def _sql_string(value: str) -> str:
    return value.replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__
