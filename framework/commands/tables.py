"""``python cmd/tables_cmd.py list|describe|history|compact|expire|drop``: maintain the Iceberg tables.

``list``, ``describe`` and ``history`` read the catalog with pyiceberg (no Spark,
answers at once). ``compact`` rewrites small data files into larger ones
(Iceberg's Spark procedure ``rewrite_data_files``; the rows are unchanged, a
``replace`` snapshot is committed); ``expire`` removes snapshots older than
``--older-than-hours`` while keeping ``--retain-last`` (``expire_snapshots``)
and then files no snapshot references (``remove_orphan_files``, files older
than ``--orphans-older-than-hours``, so a batch being written is not touched);
``drop`` removes a table with its files. Those four start Spark.
Tables are named ``<table>`` (in ``PIPELINE_ICEBERG_NAMESPACE``) or ``<namespace>.<table>``.
"""
from __future__ import annotations

import argparse
import datetime as dt
from typing import Any, Sequence

from framework import cli
from framework.errors import FrameworkError
from framework.log import get_logger
from framework.settings import Settings

MAX_HOURS = 24.0 * 365 * 100  # a century: beyond any retention

log = get_logger("tables")


class TableError(FrameworkError):
    """A table named on the command line does not exist or cannot be maintained."""


def _identifier(settings: Settings, name: str) -> str:
    """``namespace.table`` of a name given as ``table``, ``namespace.table`` or ``catalog.namespace.table``."""
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == settings.iceberg_catalog:
        parts = parts[1:]
    return ".".join(parts) if len(parts) == 2 else f"{settings.iceberg_namespace}.{parts[-1]}"


def _catalog(settings: Settings) -> Any:
    from framework.sinks.iceberg_catalog import ensure_catalog_database, load_catalog

    return load_catalog(settings, ensure_catalog_database(settings))


def _load(catalog: Any, settings: Settings, name: str) -> Any:
    ident = _identifier(settings, name)
    try:
        return catalog.load_table(ident)
    except Exception:  # noqa: BLE001 - NoSuchTableError: list what exists
        names = [".".join(t) for t in catalog.list_tables(ident.split(".")[0])] if catalog else []
        raise TableError(f"No Iceberg table {ident}; tables: {', '.join(names) or 'none'}.") from None


def list_tables(settings: Settings) -> list[tuple[str, int, int, int]]:
    """(namespace.table, rows, data files, snapshots) of every table of the namespace."""
    catalog = _catalog(settings)
    out = []
    for ident in sorted(catalog.list_tables(settings.iceberg_namespace)):
        table = catalog.load_table(ident)
        snap = table.current_snapshot()
        summary = snap.summary.additional_properties if snap and snap.summary else {}
        out.append((".".join(ident), int(summary.get("total-records", 0)), int(summary.get("total-data-files", 0)),
                    len(table.metadata.snapshots)))
    return out


def _spark(settings: Settings) -> Any:
    from framework.sinks.iceberg_catalog import ensure_catalog_database, spark_catalog_conf
    from framework.spark import build_spark_session

    return build_spark_session(settings, app_name="tables",
                               extra_conf=spark_catalog_conf(settings, ensure_catalog_database(settings)))


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        rows = list_tables(settings)
        for name, records, files, snapshots in rows:
            print(f"{settings.iceberg_catalog}.{name}\t{records} rows\t{files} data files\t{snapshots} snapshots")
        print(f"({len(rows)} table{'s' if len(rows) != 1 else ''} in {settings.iceberg_catalog}."
              f"{settings.iceberg_namespace}, warehouse {settings.warehouse_url})")
        return 0
    if not args.table:
        raise TableError(f"`tables {args.action}` needs a table name; `tables list` shows them.")
    catalog = _catalog(settings)
    table = _load(catalog, settings, args.table)
    name = f"{settings.iceberg_catalog}.{_identifier(settings, args.table)}"
    if args.action == "describe":
        print(f"{name}  location {table.metadata.location}")
        for field in table.schema().fields:
            print(f"  {field.name:<24} {str(field.field_type):<20} {'NOT NULL' if field.required else ''}")
        for key, value in sorted(table.properties.items()):
            print(f"  property {key} = {value}")
        return 0
    if args.action == "history":
        for snap in table.metadata.snapshots:
            props = snap.summary.additional_properties if snap.summary else {}
            when = dt.datetime.fromtimestamp(snap.timestamp_ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            batch = f" batch {props['pipeline.batch-id']} of {props.get('pipeline.source')}" \
                if "pipeline.batch-id" in props else ""
            op = snap.summary.operation.value if snap.summary else "?"
            print(f"{snap.snapshot_id}  {when}  {op:<8} +{props.get('added-records', 0)} rows"
                  f" ({props.get('total-records', '?')} total){batch}")
        return 0
    spark = _spark(settings)
    try:
        if args.action == "compact":
            from framework.sinks.iceberg import compact

            before = spark.sql(f"SELECT count(*) FROM {name}.files").collect()[0][0]
            result = compact(spark, name)
            after = spark.sql(f"SELECT count(*) FROM {name}.files").collect()[0][0]
            print(f"{name}: {result['rewritten']} data files rewritten into {result['added']} "
                  f"({before} -> {after} data files)")
        elif args.action == "expire":
            older = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=args.older_than_hours)
            row = spark.sql(f"CALL {settings.iceberg_catalog}.system.expire_snapshots(table => "
                            f"'{_identifier(settings, args.table)}', older_than => TIMESTAMP "
                            f"'{older:%Y-%m-%d %H:%M:%S}', retain_last => {args.retain_last})").collect()[0]
            orphans_before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=args.orphans_older_than_hours)
            orphans = spark.sql(f"CALL {settings.iceberg_catalog}.system.remove_orphan_files(table => "
                                f"'{_identifier(settings, args.table)}', older_than => TIMESTAMP "
                                f"'{orphans_before:%Y-%m-%d %H:%M:%S}')").collect()
            print(f"{name}: expired {row['deleted_manifest_lists_count']} snapshot(s) "
                  f"({row['deleted_data_files_count']} data files deleted), removed {len(orphans)} orphan file(s)")
        elif args.action == "drop":
            spark.sql(f"DROP TABLE {name} PURGE")
            print(f"dropped {name} and its files")
    finally:
        spark.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("List, describe and maintain the Iceberg tables of the catalog.")
    p.add_argument("action", choices=["list", "describe", "history", "compact", "expire", "drop"])
    p.add_argument("table", nargs="?", help="table name: purchases, pipeline.purchases or iceberg.pipeline.purchases")
    p.add_argument("--older-than-hours", type=cli.bounded_float(0, MAX_HOURS), default=24.0,
                   help="expire: snapshots older than this (default 24)")
    p.add_argument("--retain-last", type=cli.bounded_int(1), default=10,
                   help="expire: keep at least this many snapshots")
    p.add_argument("--orphans-older-than-hours", type=cli.bounded_float(0, MAX_HOURS), default=24.0,
                   help="expire: remove unreferenced files older than this (default 24)")
    return cli.run(p, _main, argv)
