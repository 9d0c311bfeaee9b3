"""The Iceberg catalog of the framework: Iceberg's JDBC catalog in PostgreSQL, one warehouse URL.

Spark, pyiceberg and Trino see the same tables because they use the same
catalog: the ``iceberg_tables`` / ``iceberg_namespace_properties`` tables that
Iceberg's ``JdbcCatalog`` keeps in the database of ``PIPELINE_POSTGRES_URL``
(the local PostgreSQL when it is empty), under the catalog name
``PIPELINE_ICEBERG_CATALOG`` (``iceberg``). Table files live under
``PIPELINE_ICEBERG_WAREHOUSE`` (default ``<output_dir>/warehouse``; ``hdfs://``,
``s3a://`` and the other Hadoop filesystem URLs of
:data:`framework.settings.WAREHOUSE_SCHEMES`). A table is
``<catalog>.<namespace>.<table>``, e.g. ``iceberg.pipeline.purchases``.

Minimal use::

    conf = spark_catalog_conf(settings)          # {"spark.sql.catalog.iceberg": ..., ...}
    catalog = load_catalog(settings)              # pyiceberg's SqlCatalog on the same tables
    catalog.load_table("pipeline.purchases").scan().to_arrow()

Contract: nothing here starts a server; :func:`ensure_catalog_database` starts
the local PostgreSQL when the settings ask for it (and leaves it running, like a
database) and raises :class:`~framework.errors.PostgresError` (one sentence,
bounded by a connection timeout) when the database does not answer.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from framework.errors import PostgresError
from framework.log import get_logger
from framework.settings import Settings

if TYPE_CHECKING:
    from framework.local.postgres import PostgresTarget

log = get_logger("iceberg")

#: Table properties of every table the framework creates: Parquet data files, metadata kept bounded
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "history.expire.max-snapshot-age-ms": str(24 * 3600 * 1000),
    "history.expire.min-snapshots-to-keep": "50",
}
_TABLE_NAME = re.compile(r"[^A-Za-z0-9_]")


def iceberg_table_name(name: str) -> str:
    """A topic or route name as an Iceberg table name: ``game-events.v1`` -> ``game_events_v1``, lower case."""
    cleaned = _TABLE_NAME.sub("_", name).lower()
    return cleaned if cleaned and not cleaned[0].isdigit() else f"t_{cleaned}"


def qualified(settings: Settings, table: str) -> str:
    """``<catalog>.<namespace>.<table>`` as Spark SQL spells it."""
    return f"{settings.iceberg_catalog}.{settings.iceberg_namespace}.{table}"


def catalog_target(settings: Settings) -> "PostgresTarget":
    """The PostgreSQL database of the catalog (not started here)."""
    from framework.local.postgres import postgres_target

    return postgres_target(settings)


def ensure_catalog_database(settings: Settings, timeout: float = 10.0) -> "PostgresTarget":
    """The catalog's database, answering: the local PostgreSQL is started (and left running) when needed.

    Raises :class:`PostgresError` naming the server and the remedy when it does not answer within ``timeout``.
    """
    from framework.local.postgres import LocalPostgres

    if settings.uses_local_postgres:
        pg = LocalPostgres.from_settings(settings)
        if not pg.running_pid():
            log.info("Starting the local PostgreSQL for the Iceberg catalog (stop it with "
                     "`python cmd/postgres_cmd.py stop`)")
            pg.start()
        target = pg.target
    else:
        target = catalog_target(settings)
    check_catalog_database(target, timeout)
    return target


def check_catalog_database(target: "PostgresTarget", timeout: float = 10.0) -> None:
    """Raise :class:`PostgresError` (one sentence) unless the catalog database accepts a connection."""
    try:
        with target.connect(timeout=timeout):
            pass
    except PostgresError:
        raise
    except Exception as exc:  # noqa: BLE001 - psycopg's OperationalError etc., as one sentence
        raise PostgresError(
            f"The Iceberg catalog's database {target.safe_url} does not answer "
            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); start it "
            "(`python cmd/postgres_cmd.py start`) or set PIPELINE_POSTGRES_URL.") from None


def spark_catalog_conf(settings: Settings, target: "PostgresTarget | None" = None) -> dict[str, str]:
    """Runtime Spark SQL settings that register the catalog as ``spark.sql.catalog.<name>``."""
    target = target or catalog_target(settings)
    prefix = f"spark.sql.catalog.{settings.iceberg_catalog}"
    conf = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": target.jdbc_url,
        f"{prefix}.jdbc.user": target.user,
        f"{prefix}.jdbc.password": target.password,
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.warehouse": settings.warehouse_url,
        # a table read in the same session sees the latest commit of any writer (no cached snapshot)
        f"{prefix}.cache-enabled": "false",
    }
    conf.update({f"{prefix}.hadoop.{k}": v for k, v in s3a_conf(settings).items()})
    return conf


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop S3A settings for an s3a:// warehouse with a custom endpoint (MinIO, moto, ...)."""
    if not settings.warehouse_url.startswith("s3a://") or not settings.iceberg_s3_endpoint:
        return {}
    return {"fs.s3a.endpoint": settings.iceberg_s3_endpoint, "fs.s3a.path.style.access": "true",
            "fs.s3a.connection.ssl.enabled": str(settings.iceberg_s3_endpoint.startswith("https")).lower(),
            "fs.s3a.endpoint.region": "us-east-1"}


def load_catalog(settings: Settings, target: "PostgresTarget | None" = None) -> Any:
    """pyiceberg's ``SqlCatalog`` over the same JDBC catalog tables (reads the tables without Spark)."""
    from pyiceberg.catalog.sql import SqlCatalog

    target = target or catalog_target(settings)
    uri = (f"postgresql+psycopg://{_quote(target.user)}:{_quote(target.password)}@{target.host}:{target.port}/"
           f"{target.database}")
    props: dict[str, Any] = {"uri": uri, "warehouse": settings.warehouse_url, "init_catalog_tables": "false",
                             "pool_pre_ping": "false"}
    if settings.warehouse_url.startswith("s3a://") and settings.iceberg_s3_endpoint:
        props.update({"s3.endpoint": settings.iceberg_s3_endpoint, "s3.region": "us-east-1",
                      "s3.force-virtual-addressing": "false"})
    return SqlCatalog(settings.iceberg_catalog, **props)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
