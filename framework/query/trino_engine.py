"""``pipeline query --engine trino``: the statements run by Trino (the seeds' Presto) over the Iceberg tables.

The session's catalog is ``PIPELINE_ICEBERG_CATALOG`` and its schema
``PIPELINE_ICEBERG_NAMESPACE``, so ``show tables``, ``describe purchases`` and
``select avg(cast(strength as integer)) from purchases`` run as the seeds typed
them. Statements go through Trino's own Python client (``trino`` on PyPI: the
REST protocol, paging and typed values are its business, not ours).

Which Trino: ``PIPELINE_TRINO_URL`` when set (a running server, e.g. the
docker-compose service); otherwise the local Trino of
:mod:`framework.local.trino`, started when it is not running and **left
running** for the next statement (it takes tens of seconds to start; stop it
with ``pipeline trino stop``), the way the catalog's local PostgreSQL is.

Only the Iceberg tables are Trino's: the plain Parquet table directories are
DuckDB's and Spark's (Trino has no catalog for them).

Contract: :meth:`TrinoEngine.execute` returns ``(columns, rows)`` with Python
values (``double`` -> float, ``decimal`` -> Decimal, timestamps -> datetime);
a missing table raises :class:`~framework.query.duck.QueryError` listing the
tables; a Trino that does not answer raises :class:`~framework.errors.TrinoError`.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from framework.errors import TrinoError
from framework.log import get_logger
from framework.query.duck import QueryError
from framework.settings import Settings

log = get_logger("query")

USER = "pipeline"
#: Trino's error name for a statement no node can run yet (a server that has just started)
NO_NODES = "NO_NODES_AVAILABLE"
#: seconds a statement refused with NO_NODES_AVAILABLE is sent again (the refusal seen lasted under 4 s)
NO_NODES_WAIT = 30.0
#: the statements the seeds typed into Presto over their game tables, run verbatim (docs/trino.md)
SEED_STATEMENTS = ("show tables", "describe purchases", "select * from purchases", "select count(*) from purchases",
                   "select avg(cast(strength as integer)) from purchases")


def trino_url(settings: Settings) -> str:
    """The Trino to use: ``PIPELINE_TRINO_URL``, or the local one (started and left running when it is not)."""
    if not settings.uses_local_trino:
        return settings.trino_url.rstrip("/")
    from framework.local.trino import LocalTrino

    trino = LocalTrino.from_settings(settings)
    if not trino.running_pid():
        log.info("Starting the local Trino for --engine trino; it keeps running for the next statements "
                 "(stop it with `pipeline trino stop`)")
        trino.start()
    return trino.url


class TrinoEngine:
    """A Trino connection whose session catalog and schema are the framework's Iceberg namespace."""

    name = "trino"

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        import trino

        self.settings = settings
        self.url = url or trino_url(settings)
        parts = urlsplit(self.url)
        self.conn = trino.dbapi.connect(  # type: ignore[no-untyped-call]
            host=parts.hostname or "127.0.0.1", port=parts.port or (443 if parts.scheme == "https" else 8080),
            http_scheme=parts.scheme or "http", user=USER, catalog=settings.iceberg_catalog,
            schema=settings.iceberg_namespace, source="pipeline-query", request_timeout=120)

    def tables(self) -> dict[str, str]:
        """``{name: where}`` of the Iceberg tables in the session's schema."""
        where = f"{self.settings.iceberg_catalog}.{self.settings.iceberg_namespace}"
        try:
            _, rows = self._run("SHOW TABLES", None)
        except QueryError:
            return {}  # no schema yet
        return {row[0]: f"iceberg {where}.{row[0]} (trino {self.url})" for row in sorted(rows)}

    def execute(self, sql: str, limit: int | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement: (column names, rows); at most ``limit`` rows are fetched (the rest is cancelled).

        A statement refused with ``NO_NODES_AVAILABLE`` is sent again, for up to
        :data:`NO_NODES_WAIT` seconds: a Trino that has just started may not yet know which nodes serve
        the Iceberg catalog (seen with Trino 476: the first scan of an ``s3a://`` table, 2 s after
        ``SERVER STARTED``, failed so; the same scan 2 s later ran). The error comes from the scheduler,
        before any task ran, so sending the statement again repeats nothing.
        """
        deadline = time.monotonic() + NO_NODES_WAIT
        while True:
            try:
                return self._run(sql, limit)
            except QueryError as exc:
                if str(exc).endswith(f"({NO_NODES})") and time.monotonic() < deadline:
                    log.info("Trino at {} has no node for the statement yet; sending it again", self.url)
                    time.sleep(1.0)
                    continue
                if "TABLE_NOT_FOUND" in str(exc) or "SCHEMA_NOT_FOUND" in str(exc):
                    raise QueryError(f"{exc}; tables: {', '.join(self.tables()) or 'none'}.") from None
                raise

    def _run(self, sql: str, limit: int | None) -> tuple[list[str], list[tuple[Any, ...]]]:
        from trino.exceptions import TrinoQueryError

        cursor = self.conn.cursor()
        try:
            cursor.execute(sql)
            rows = cursor.fetchmany(limit) if limit else cursor.fetchall()
            columns = [d[0] for d in cursor.description] if cursor.description else []
            if limit and len(rows) == limit:
                cursor.cancel()
        except TrinoQueryError as exc:
            message = (exc.message or str(exc)).strip().splitlines()[0].rstrip(".")
            raise QueryError(f"The query failed: {message} ({exc.error_name})") from None
        except KeyboardInterrupt:
            cursor.cancel()
            raise
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise TrinoError(f"Trino at {self.url} does not answer ({type(exc).__name__}); start it "
                             "(`pipeline trino start`) or fix PIPELINE_TRINO_URL.") from None
        return columns, [tuple(r) for r in rows]

    def close(self) -> None:
        self.conn.close()
