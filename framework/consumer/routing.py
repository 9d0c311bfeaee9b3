"""Routing: one topic's records split into several tables by the value of one field.

A consumer routes when it declares ``route_field`` and ``routes`` (value of the
field -> table), with one schema per *table* instead of per topic::

    class Orders(ConsumerSparkABC):
        name = "orders"
        topics = ["orders"]
        route_field = "kind"
        routes = {"created": "orders", "paid": "payments", "refunded": "payments"}
        schema = {"orders": "kind STRING, order_id INT NOT NULL, items INT",
                  "payments": "kind STRING, order_id INT NOT NULL, amount DOUBLE NOT NULL"}
        writer = ParquetWriter()       # <output_dir>/orders/, <output_dir>/payments/, <output_dir>/orders_quarantine/

Column contract: the valid rows of each table are that table's schema fields
followed by the ``kafka_*`` metadata columns (as :mod:`framework.consumer.parsing`); every
record that does not fit goes to the ONE quarantine of the topic, with the
quarantine columns of :mod:`framework.consumer.parsing` and one reason, checked in this
order:

- ``empty value``, ``not valid JSON``, ``not a JSON object (got ...)``
- ``missing required field 'kind'`` / ``required field 'kind' is null`` (the route field)
- ``unknown kind 'shipped'``: a value that ``routes`` does not name (any JSON
  value is compared as text: ``5`` matches the route ``"5"``)
- the reasons of the table's schema (missing required field, wrong type, ...).

Every input row lands in exactly one place: one table or the quarantine. The
route field is only read for routing; declare it in a table's schema to keep it
as a column. Pure DataFrame functions, static or streaming alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from framework.errors import DeclarationError
from framework.consumer.parsing import (_BAD, _REASON, METADATA_COLUMNS, RAW_COLUMN, RESERVED_NAMES, _not_object_reason,
                                        _quote, _shown, check_records, check_schema_per_name, quarantine_rows)
from framework.consumer.values import STRICT_JSON_OPTIONS, ValueRules
from framework.sinks import QUARANTINE_SUFFIX

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from framework.sinks import ForeachBatchWriter

_TABLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TABLE = "__pipeline_table"  # working columns: the table a row is routed to (null: unrouted),
_ROUTE = "__pipeline_route"  # the route field's value as text


def _record(index: int) -> str:
    return f"__pipeline_record_{index}"


@dataclass(frozen=True)
class Routing:
    """A resolved routing: the field, ``{value: table}`` and one ``StructType`` per table (in route order)."""

    field: str
    routes: Mapping[str, str]
    schemas: Mapping[str, "StructType"]

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.schemas)


def route_tables(routes: Mapping[str, str]) -> list[str]:
    """The distinct tables of ``routes``, in the order they first appear."""
    return list(dict.fromkeys(routes.values()))


def check_routes(owner: str, route_field: Any, routes: Any, topics: Sequence[str], schema: Any,
                 quarantine_table: str) -> bool:
    """Check a routing declaration without Spark; False when the consumer does not route.

    ``owner`` is the class name for messages; ``quarantine_table`` the name of the
    topic's quarantine table, which no route may use.
    """
    if route_field is None and routes is None:
        return False
    if routes is None:
        raise DeclarationError(f"{owner}.route_field is {route_field!r} but {owner}.routes is not declared; "
                               "declare routes = {value: table} or remove route_field.")
    if route_field is None:
        raise DeclarationError(f"{owner}.routes is declared but {owner}.route_field is not; name the field whose "
                               "value picks the table, e.g. route_field = 'event_type'.")
    if not isinstance(route_field, str) or not route_field.strip():
        raise DeclarationError(f"{owner}.route_field must be the name of a top-level field like 'event_type', "
                               f"not {route_field!r}.")
    if route_field.lower() in RESERVED_NAMES:
        raise DeclarationError(f"{owner}.route_field {route_field!r} is reserved for the Kafka metadata and "
                               f"quarantine columns ({', '.join(sorted(RESERVED_NAMES))}); route on a record field.")
    if not isinstance(routes, Mapping) or not routes:
        raise DeclarationError(f"{owner}.routes must be a non-empty dict {{value of {route_field!r}: table}} like "
                               f"{{'purchase': 'purchases'}}, not {routes!r}.")
    for value, table in routes.items():
        if not isinstance(value, str) or value == "":
            raise DeclarationError(f"{owner}.routes has the key {value!r}; keys are the values of {route_field!r} "
                                   "as non-empty strings.")
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            raise DeclarationError(f"{owner}.routes[{value!r}] is {table!r}, which is not a table name (letters, "
                                   "digits, '.', '_' or '-', not starting with '_' or '.').")
        if table == quarantine_table or table.endswith(QUARANTINE_SUFFIX):
            raise DeclarationError(f"{owner}.routes[{value!r}] is {table!r}; names ending in {QUARANTINE_SUFFIX!r} "
                                   f"are for quarantines (this topic's is {quarantine_table!r}).")
    if len(topics) != 1:
        raise DeclarationError(f"{owner} declares routes for {len(topics)} topics {list(topics)!r}; routes split "
                               "one topic into tables, so declare one routing consumer per topic.")
    tables = route_tables(routes)
    if not isinstance(schema, Mapping):
        raise DeclarationError(f"{owner}.schema must be a dict with one schema per table of the routes "
                               f"({', '.join(map(repr, tables))}), not {type(schema).__name__}.")
    check_schema_per_name(f"{owner}.schema", f"{owner}.schema needs exactly one schema per table of the routes",
                          schema, tables, "not a table of the routes")
    return True


def parse_routed(df: "DataFrame", routing: Routing, rules: ValueRules | None = None) -> "DataFrame":
    """``df`` (with ``raw_value``) plus the routed table, one parsed record per table and the reason.

    The counterpart of :func:`framework.consumer.parsing.parse_records`, with the
    same contract (``docs/parse-contract.md``); split the result with
    :func:`split_routed`. Each value is read once for its route field and once
    by :func:`~framework.consumer.parsing.check_records` with its own table's
    schema; a value that cannot be routed is read again for its reason.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    rules = rules or ValueRules()
    df = df.withColumn(RAW_COLUMN, F.col(RAW_COLUMN).cast("string"))
    raw = F.col(RAW_COLUMN)
    df = df.withColumn(_ROUTE, F.from_json(raw, StructType([StructField(routing.field, StringType())]),
                                           STRICT_JSON_OPTIONS)[routing.field])
    route = F.col(_ROUTE)
    items = list(routing.routes.items())
    table = reduce(lambda expr, item: expr.when(route == item[0], F.lit(item[1])), items[1:],
                   F.when(route == items[0][0], F.lit(items[0][1])))
    df = df.withColumn(_TABLE, table)
    bad = F.when(F.col(_TABLE).isNull(), F.lit(True))
    reason = F.when(F.col(_TABLE).isNull(), _unrouted_reason(raw, routing))
    for i, (name, schema) in enumerate(routing.schemas.items()):
        df = check_records(df, schema, rules, _record(i), f"{_BAD}_{i}", f"{_REASON}_{i}",
                           only=F.col(_TABLE) == name)
        bad = bad.when(F.col(_TABLE) == name, F.col(f"{_BAD}_{i}"))
        reason = reason.when(F.col(_TABLE) == name, F.col(f"{_REASON}_{i}"))
    df = df.withColumn(_BAD, bad).withColumn(_REASON, F.when(F.col(_BAD), reason))
    return df.drop(_ROUTE, *[f"{_BAD}_{i}" for i in range(len(routing.schemas))],
                   *[f"{_REASON}_{i}" for i in range(len(routing.schemas))])


def _unrouted_reason(raw: Any, routing: Routing) -> Any:
    """Why a value has no table: not a JSON object, no route field, or a value no route names."""
    from pyspark.sql import functions as F

    values = F.try_parse_json(raw)
    value = F.try_variant_get(values, f"$['{routing.field}']", "variant")
    shown = _shown(F.try_variant_get(value, "$", "string"))
    quoted = _quote(routing.field)
    return (F.when(raw.isNull() | (F.trim(raw) == ""), F.lit("empty value"))
             .when(values.isNull(), _not_object_reason(raw))
             .when(~F.upper(F.schema_of_variant(values)).startswith("OBJECT"), _not_object_reason(raw))
             .when(value.isNull(), F.lit(f"missing required field {quoted}"))
             .when(F.is_variant_null(value), F.lit(f"required field {quoted} is null"))
             .otherwise(F.concat(F.lit(f"unknown {routing.field} '"), shown, F.lit("'"))))


def split_routed(parsed: "DataFrame", routing: Routing) -> tuple[dict[str, "DataFrame"], "DataFrame"]:
    """({table: valid rows}, quarantine rows) of a :func:`parse_routed` result (see the column contract)."""
    from pyspark.sql import functions as F

    meta = [c for c in METADATA_COLUMNS if c in parsed.columns]
    valid = ~F.col(_BAD)
    tables = {name: parsed.where(valid & (F.col(_TABLE) == name)).select(f"{_record(i)}.*", *meta)
              for i, name in enumerate(routing.schemas)}
    return tables, quarantine_rows(parsed)


def count_routed(parsed: "DataFrame", routing: Routing) -> tuple[dict[str, int], int]:
    """({table: valid rows}, quarantined rows) of a :func:`parse_routed` result, in one Spark job."""
    from pyspark.sql import functions as F

    valid = ~F.col(_BAD)
    row = parsed.agg(*[F.count(F.when(valid & (F.col(_TABLE) == name), 1)).alias(f"t{i}")
                       for i, name in enumerate(routing.schemas)],
                     F.count_if(F.col(_BAD)).alias("invalid")).collect()[0]
    return ({name: int(row[f"t{i}"] or 0) for i, name in enumerate(routing.schemas)}, int(row["invalid"] or 0))


def write_routed(parsed: "DataFrame", routing: Routing, writer: "ForeachBatchWriter",
                 transform: Callable[["DataFrame", str], "DataFrame"], batch_id: int,
                 topic: str) -> tuple[dict[str, int], int]:
    """The ``foreachBatch`` body of a routing consumer: ({table: rows written}, rows quarantined).

    ``parsed`` (a :func:`parse_routed` result) is cached for the call and counted
    first; each table with rows goes to ``writer.write_batch(transform(rows, table),
    batch_id, table)``, then the quarantine to ``writer.write_quarantine(rows,
    batch_id, topic)``. A replayed batch routes the same offsets to the same
    tables, so a writer that replaces a batch's output stays exactly once.
    """
    parsed = parsed.persist()
    try:
        counts, quarantined = count_routed(parsed, routing)
        tables, bad = split_routed(parsed, routing)
        for table, rows in counts.items():
            if rows:
                writer.write_batch(transform(tables[table], table), batch_id, table)
        if quarantined:
            writer.write_quarantine(bad, batch_id, topic)
    finally:
        parsed.unpersist()
    return counts, quarantined
