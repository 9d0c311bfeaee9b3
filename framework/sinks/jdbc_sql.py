"""The SQL of the JDBC sink, as pure functions: Spark -> PostgreSQL types, DDL, the apply transaction.

No database and no Spark session are needed here, so every statement the sink
runs is unit-tested as text (``tests/unit/test_jdbc_sql.py``).

Type mapping (Spark type -> PostgreSQL column type, as ``format_type`` spells it)
-----------------------------------------------------------------------------------
=================== ==============================
boolean             boolean
tinyint, smallint   smallint
int                 integer
bigint              bigint
float               real
double              double precision
decimal(p,s)        numeric(p,s)
string              text
varchar(n)          character varying(n)
char(n)             character(n)
binary              bytea
date                date
timestamp           timestamp with time zone
timestamp_ntz       timestamp without time zone
=================== ==============================

A field declared NOT NULL (``nullable=False``) becomes a ``NOT NULL`` column.
Arrays, maps and structs have no column type here: a one-sentence
:class:`~framework.errors.SinkSchemaError` says to flatten them (or ``to_json``
them) in the consumer's ``transform``.

An existing table *fits* a batch when every column of the batch is a column of
the table whose type is the mapped type or a lossless widening of it
(smallint -> integer -> bigint -> numeric, real -> double precision, any text
type -> text), and every NOT NULL column of the table without a default is in
the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from framework.errors import SinkSchemaError

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

LEDGER_TABLE = "pipeline_jdbc_ledger"
OWNERS_TABLE = "pipeline_jdbc_tables"
HEALTH_TABLE = "pipeline_jdbc_health"
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names (NAMEDATALEN - 1)

#: lossless widenings an existing column may have over the mapped type
WIDENINGS: Mapping[str, frozenset[str]] = {
    "smallint": frozenset({"integer", "bigint", "numeric", "real", "double precision"}),
    "integer": frozenset({"bigint", "numeric", "double precision"}),
    "bigint": frozenset({"numeric"}),
    "real": frozenset({"double precision"}),
    "text": frozenset(),
}


@dataclass(frozen=True)
class Column:
    """One column: name, PostgreSQL type (``format_type`` spelling) and whether it is NOT NULL."""

    name: str
    type: str
    not_null: bool = False

    def ddl(self) -> str:
        return f"{ident(self.name)} {self.type}" + (" NOT NULL" if self.not_null else "")


def ident(name: str) -> str:
    """``name`` as a quoted PostgreSQL identifier (inner double quotes doubled); refuses empty or too long names."""
    if not name or "\x00" in name:
        raise SinkSchemaError(f"{name!r} is not a valid table or column name; use a non-empty name without NUL.")
    if len(name.encode()) > MAX_IDENTIFIER:
        raise SinkSchemaError(f"Name {name!r} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes; use a shorter name.")
    return '"' + name.replace('"', '""') + '"'


def pg_type(data_type: "DataType", field: str = "?") -> str:
    """The PostgreSQL column type of a Spark type (table above); :class:`SinkSchemaError` when there is none."""
    from pyspark.sql import types as T

    simple = [(T.BooleanType, "boolean"), (T.ByteType, "smallint"), (T.ShortType, "smallint"),
              (T.IntegerType, "integer"), (T.LongType, "bigint"), (T.FloatType, "real"),
              (T.DoubleType, "double precision"), (T.BinaryType, "bytea"), (T.DateType, "date"),
              (T.TimestampNTZType, "timestamp without time zone"), (T.TimestampType, "timestamp with time zone")]
    if isinstance(data_type, T.DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    if isinstance(data_type, T.VarcharType):
        return f"character varying({data_type.length})"
    if isinstance(data_type, T.CharType):
        return f"character({data_type.length})"
    if isinstance(data_type, T.StringType):
        return "text"
    for spark_type, name in simple:
        if isinstance(data_type, spark_type):
            return name
    raise SinkSchemaError(f"Field {field!r} has Spark type {data_type.simpleString()}, which has no PostgreSQL "
                          "column type in the JDBC sink; flatten it or convert it with to_json() "
                          "in the consumer's transform().")


def columns_of(schema: "StructType") -> list[Column]:
    """The columns of a Spark schema, NOT NULL kept."""
    return [Column(f.name, pg_type(f.dataType, f.name), not f.nullable) for f in schema.fields]


def create_table(table: str, columns: Sequence[Column], key: Sequence[str] = ()) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the columns and, when ``key`` is given, its primary key."""
    body = [c.ddl() for c in columns]
    if key:
        body.append(f"PRIMARY KEY ({', '.join(ident(k) for k in key)})")
    return f"CREATE TABLE IF NOT EXISTS {ident(table)} ({', '.join(body)})"


def create_staging(staging: str, table: str) -> str:
    """An unlogged staging table with the target's columns (no constraints, so any batch lands)."""
    return f"CREATE UNLOGGED TABLE IF NOT EXISTS {ident(staging)} (LIKE {ident(table)})"


def check_fit(table: str, batch: Sequence[Column], existing: Sequence[tuple[str, str, bool, bool]]) -> None:
    """Raise :class:`SinkSchemaError` (one sentence) when ``batch`` does not fit ``table``.

    ``existing``: ``(name, format_type, not_null, has_default)`` per column of the table.
    """
    have = {name: (typ, not_null, default) for name, typ, not_null, default in existing}
    for col in batch:
        if col.name not in have:
            raise SinkSchemaError(
                f"Column {col.name!r} ({col.type}) of the batch is not in the existing table {table!r}; add it "
                f"(ALTER TABLE {ident(table)} ADD COLUMN {col.ddl()}), or write to a new table.")
        typ = have[col.name][0]
        if not type_fits(col.type, typ):
            raise SinkSchemaError(
                f"Column {col.name!r} of table {table!r} is {typ} but the batch has {col.type}; change the "
                "consumer's schema back, or migrate the table (or write to a new table).")
    names = {c.name for c in batch}
    for name, (_typ, not_null, default) in have.items():
        if not_null and not default and name not in names:
            raise SinkSchemaError(
                f"Column {name!r} of table {table!r} is NOT NULL without a default but the batch has no such "
                "field; add it to the consumer's schema, or give the column a default.")


def type_fits(batch_type: str, table_type: str) -> bool:
    """True when a value of ``batch_type`` is stored in a ``table_type`` column without loss."""
    if batch_type == table_type:
        return True
    base = batch_type.split("(")[0]
    if table_type == "text" and base in ("text", "character varying", "character"):
        return True
    if base == "numeric" and table_type == "numeric":
        return True
    return table_type.split("(")[0] in WIDENINGS.get(base, frozenset())


def describe_columns_query() -> str:
    """``(name, format_type, not_null, has_default)`` of every column of table ``%s`` (schema ``public``)."""
    return ("SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum")


def primary_key_query() -> str:
    """The primary-key columns of table ``%s`` in key order."""
    return ("SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indisprimary AND n.nspname = current_schema() AND c.relname = %s "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)")


# ------------------------------------------------------------------ metadata tables
def metadata_ddl() -> list[str]:
    """The sink's three small tables: ledger of applied batches, table owners, per-topic health."""
    return [
        f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (consumer text NOT NULL, target text NOT NULL, "
        "batch_id bigint NOT NULL, rows bigint NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (consumer, target, batch_id))",
        f"CREATE TABLE IF NOT EXISTS {OWNERS_TABLE} (table_name text PRIMARY KEY, consumer text NOT NULL, "
        "topic text NOT NULL, role text NOT NULL, claimed_at timestamptz NOT NULL DEFAULT now())",
        f"CREATE TABLE IF NOT EXISTS {HEALTH_TABLE} (consumer text NOT NULL, topic text NOT NULL, "
        "batches bigint NOT NULL DEFAULT 0, rows bigint NOT NULL DEFAULT 0, quarantined bigint NOT NULL DEFAULT 0, "
        "last_batch_id bigint, last_batch_rows bigint, last_batch_at timestamptz, end_offsets jsonb, "
        "PRIMARY KEY (consumer, topic))",
    ]


def ledger_claim() -> str:
    """Insert the ledger row of ``(consumer, target, batch_id, rows)``; returns a row only when it is new."""
    return (f"INSERT INTO {LEDGER_TABLE} (consumer, target, batch_id, rows) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING batch_id")


def ledger_has() -> str:
    return f"SELECT 1 FROM {LEDGER_TABLE} WHERE consumer = %s AND target = %s AND batch_id = %s"


def health_upsert() -> str:
    """Count one applied batch of ``(consumer, topic)``.

    Parameters: consumer, topic, batches (1 for the valid rows, 0 for the quarantine), rows,
    quarantined, batch id, rows of the batch, end offsets (JSON text or None).
    """
    return (f"INSERT INTO {HEALTH_TABLE} AS h (consumer, topic, batches, rows, quarantined, last_batch_id, "
            "last_batch_rows, last_batch_at, end_offsets) VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s::jsonb) "
            "ON CONFLICT (consumer, topic) DO UPDATE SET batches = h.batches + excluded.batches, "
            "rows = h.rows + excluded.rows, "
            "quarantined = h.quarantined + excluded.quarantined, last_batch_id = excluded.last_batch_id, "
            "last_batch_rows = excluded.last_batch_rows, last_batch_at = excluded.last_batch_at, "
            "end_offsets = COALESCE(excluded.end_offsets, h.end_offsets)")


# ------------------------------------------------------------------ applying a batch
def apply_insert(table: str, staging: str, columns: Iterable[str]) -> str:
    """``insert.mode=insert``: every staged row appended."""
    cols = ", ".join(ident(c) for c in columns)
    return f"INSERT INTO {ident(table)} ({cols}) SELECT {cols} FROM {ident(staging)}"


def apply_upsert(table: str, staging: str, columns: Sequence[str], key: Sequence[str],
                 order: Sequence[str] = ()) -> str:
    """``insert.mode=upsert``: insert, or replace the non-key columns of the row with the same key.

    Several rows of one batch with the same key: the last one wins, ``order``
    being the columns that order the batch (e.g. ``kafka_partition, kafka_offset``).
    """
    cols = ", ".join(ident(c) for c in columns)
    keys = ", ".join(ident(k) for k in key)
    source = f"SELECT DISTINCT ON ({keys}) {cols} FROM {ident(staging)}"
    if order:
        source += f" ORDER BY {keys}, " + ", ".join(f"{ident(o)} DESC" for o in order)
    rest = [c for c in columns if c not in key]
    action = ("DO UPDATE SET " + ", ".join(f"{ident(c)} = excluded.{ident(c)}" for c in rest)) if rest else "DO NOTHING"
    return f"INSERT INTO {ident(table)} ({cols}) {source} ON CONFLICT ({keys}) {action}"
