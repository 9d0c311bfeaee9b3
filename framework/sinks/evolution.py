"""Schema evolution rules shared by the Iceberg and Parquet writers: what a changed schema may do to a table.

A consumer's schema (the rows its writer receives) is compared with the schema
of the table it writes, when the consumer starts and before anything is written:

- a column only in the consumer's schema is **added**, nullable (old rows read null);
- a type Iceberg widens in place is **widened**: ``int -> bigint``,
  ``float -> double``, ``decimal(p, s) -> decimal(P, s)`` with ``P > p``;
- a column required (NOT NULL) in the table and optional in the consumer's schema
  is **relaxed** to optional;
- a column only in the table is kept when optional (new rows write null), and is
  **refused** when required;
- any other type change (``double -> string``, ``bigint -> int``, a struct that
  differs) is **refused**.

:func:`plan_evolution` returns the changes or raises :class:`SchemaEvolutionError`,
one sentence naming the table, the column, the old and new types and what to do.
Pure functions over pyspark ``StructType`` s: unit-testable without Spark running.
Sources of the rules: Iceberg's spec, "Schema Evolution" (valid type promotions),
and Spark's ``ALTER TABLE ... ADD COLUMN / ALTER COLUMN ... TYPE / DROP NOT NULL``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from framework.errors import ConsumerError

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType


class SchemaEvolutionError(ConsumerError):
    """A consumer's schema changed a table's column in a way the table cannot follow."""


@dataclass(frozen=True)
class Change:
    """One change to a table: ``kind`` is ``add``, ``widen`` or ``relax``; ``type`` the Spark SQL type name."""

    kind: str
    column: str
    type: str
    old_type: str | None = None

    def sql(self, table: str) -> str:
        """The Spark SQL statement that applies the change to ``table`` (a qualified name)."""
        if self.kind == "add":
            return f"ALTER TABLE {table} ADD COLUMN {_ident(self.column)} {self.type}"
        if self.kind == "widen":
            return f"ALTER TABLE {table} ALTER COLUMN {_ident(self.column)} TYPE {self.type}"
        return f"ALTER TABLE {table} ALTER COLUMN {_ident(self.column)} DROP NOT NULL"

    def describe(self) -> str:
        if self.kind == "add":
            return f"added column {self.column} {self.type} (nullable)"
        if self.kind == "widen":
            return f"widened column {self.column} from {self.old_type} to {self.type}"
        return f"column {self.column} is now optional"


def can_widen(old: "DataType", new: "DataType") -> bool:
    """True when Iceberg promotes ``old`` to ``new`` in place (int->long, float->double, decimal precision)."""
    from pyspark.sql.types import DecimalType, DoubleType, FloatType, IntegerType, LongType

    if isinstance(old, IntegerType) and isinstance(new, LongType):
        return True
    if isinstance(old, FloatType) and isinstance(new, DoubleType):
        return True
    if isinstance(old, DecimalType) and isinstance(new, DecimalType):
        return new.scale == old.scale and new.precision > old.precision
    return False


def same_type(old: "DataType", new: "DataType") -> bool:
    """Equal types, ignoring nullability inside structs, arrays and maps."""
    return _strip(old) == _strip(new)


def plan_evolution(table: str, old: "StructType", new: "StructType") -> list[Change]:
    """The changes that make table ``table`` (schema ``old``) accept rows of schema ``new``.

    Names are compared case-insensitively (as Spark and Iceberg do by default).
    Raises :class:`SchemaEvolutionError` for a change the table cannot follow.
    """
    existing = {f.name.lower(): f for f in old.fields}
    wanted = {f.name.lower(): f for f in new.fields}
    changes: list[Change] = []
    for key, field in wanted.items():
        current = existing.get(key)
        if current is None:
            changes.append(Change("add", field.name, field.dataType.simpleString()))
            continue
        if not same_type(current.dataType, field.dataType):
            if not can_widen(current.dataType, field.dataType):
                raise SchemaEvolutionError(
                    f"Table {table} column {current.name!r} is {current.dataType.simpleString()} but the consumer's "
                    f"schema now says {field.dataType.simpleString()}, a change the table cannot make in place "
                    f"(only int->bigint, float->double and a larger decimal precision are); keep "
                    f"{current.dataType.simpleString()}, or write a new column name or a new table.")
            changes.append(Change("widen", current.name, field.dataType.simpleString(),
                                  current.dataType.simpleString()))
        if not current.nullable and field.nullable:
            changes.append(Change("relax", current.name, field.dataType.simpleString()))
    for key, current in existing.items():
        if key not in wanted and not current.nullable:
            raise SchemaEvolutionError(
                f"Table {table} column {current.name!r} ({current.dataType.simpleString()} NOT NULL) is required "
                f"but the consumer's schema no longer has it, so new rows could not be written; add the field "
                f"back to the schema, or make the column optional first (ALTER TABLE {table} ALTER COLUMN "
                f"{current.name} DROP NOT NULL), or write a new table.")
    return changes


def _strip(data_type: "DataType") -> object:
    """A comparable form of a type without nullability flags."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(data_type, StructType):
        return ("struct", tuple((f.name.lower(), _strip(f.dataType)) for f in data_type.fields))
    if isinstance(data_type, ArrayType):
        return ("array", _strip(data_type.elementType))
    if isinstance(data_type, MapType):
        return ("map", _strip(data_type.keyType), _strip(data_type.valueType))
    return data_type.simpleString()


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"
