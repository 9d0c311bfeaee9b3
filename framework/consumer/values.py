"""Exact values: the shadow schema a record is parsed with, and the conversions that keep values exact.

Spark's JSON reader is lenient where the parse contract (``docs/parse-contract.md``)
is strict, so :func:`framework.consumer.parsing.parse_records` does not parse with
the declared schema directly. It parses with a *shadow* of it
(:func:`shadow_schema`), then converts the shadow leaves with
:func:`convert_record`:

- ``TIMESTAMP`` / ``TIMESTAMP_NTZ`` / ``DATE`` leaves are read as the JSON text
  and converted here: an ISO-8601 string (:data:`ISO_TIMESTAMP`, :data:`ISO_DATE`),
  or an integer in a unit the consumer declares (``timestamp_units``); anything
  else, or an instant outside :attr:`ValueRules.years`, is a problem (Spark alone
  reads ``1767592800000`` as seconds, year 57982, and ``"202601"`` as year 202601).
- ``DECIMAL(p,s)`` leaves are read as a variant, which keeps the number exactly as
  written, and accepted only when the number fits without rounding (Spark alone
  rounds ``12.345`` into ``DECIMAL(38,2)`` to ``12.35``).
- every other leaf keeps Spark's typed parse; a value of the wrong type at any
  depth is caught by Spark's corrupt-record column (:data:`CORRUPT`).

:func:`convert_record` returns the converted record (fields declared NOT NULL
marked non-nullable, so the written schema keeps them required) and one problem
column per checked leaf (a sentence, or null when the leaf is fine).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Mapping, cast

from framework.errors import DeclarationError

if TYPE_CHECKING:
    from pyspark.sql import Column
    from pyspark.sql.types import DataType, StructType

#: Spark's corrupt-record column in the shadow schema: set when any value at any depth does not convert
CORRUPT = "__pipeline_corrupt"
#: Spark JSON options: everything RFC 8259 does not allow is refused (several are Spark's defaults already)
STRICT_JSON_OPTIONS = {
    "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT,
    "allowNonNumericNumbers": "false", "allowSingleQuotes": "false", "allowUnquotedFieldNames": "false",
    "allowNumericLeadingZeros": "false", "allowBackslashEscapingAnyCharacter": "false",
    "allowUnquotedControlChars": "false", "allowComments": "false",
}
#: ISO-8601 / RFC 3339 date-time: date, optional ``T``/space + hh:mm[:ss[.fraction]], optional ``Z``/``±hh:mm``;
#: at most microseconds (trailing zeros beyond them are fine), because Spark keeps microseconds
ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6}0*)?)?)?(Z|[+-]\d{2}:\d{2})?$"
ISO_TIMESTAMP_NTZ = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6}0*)?)?)?$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
_EPOCH_INTEGER = r"^-?\d{1,19}$"
#: declared units of epoch numbers -> the Spark function that reads them
UNITS = {"s": "timestamp_seconds", "ms": "timestamp_millis", "us": "timestamp_micros"}
DEFAULT_YEARS = (1900, 9999)
_MAX_SHOWN = 80


@dataclass(frozen=True)
class ValueRules:
    """What a consumer declares about its values beyond the schema.

    ``timestamp_units``: ``{field path: unit}`` (``"s"``, ``"ms"`` or ``"us"``) for
    TIMESTAMP fields that may hold epoch numbers (``{"time": "ms"}``; a nested
    field as ``"loc.ts"``). ``years``: the inclusive range of years a TIMESTAMP or
    DATE value must fall in (default 1900..9999).
    """

    timestamp_units: Mapping[str, str] = field(default_factory=dict)
    years: tuple[int, int] = DEFAULT_YEARS

    def __post_init__(self) -> None:
        for path, unit in self.timestamp_units.items():
            if unit not in UNITS:
                raise DeclarationError(f"timestamp_units[{path!r}] is {unit!r}; use one of {', '.join(UNITS)}.")
        low, high = self.years
        if not (1 <= low <= high <= 9999):
            raise DeclarationError(f"timestamp years {self.years!r} are not a range within 1..9999, "
                                   "like (1900, 9999).")


def check_units(units: Mapping[str, str], schema: "StructType", owner: str) -> None:
    """Each declared unit names a TIMESTAMP field of ``schema`` (dotted path through structs)."""
    from pyspark.sql.types import StructType, TimestampType

    for path in units:
        dtype: Any = schema
        for part in path.split("."):
            names = {f.name: f.dataType for f in dtype.fields} if isinstance(dtype, StructType) else {}
            if part not in names:
                raise DeclarationError(f"{owner}.timestamp_units names {path!r}, which is not a field of the schema.")
            dtype = names[part]
        if not isinstance(dtype, TimestampType):
            raise DeclarationError(f"{owner}.timestamp_units names {path!r}, which is {dtype.simpleString()}, "
                                   "not a TIMESTAMP field.")


def shadow_schema(schema: "StructType") -> "StructType":
    """``schema`` as parsed: time leaves as STRING, decimals as VARIANT, all nullable, plus :data:`CORRUPT`."""
    from pyspark.sql.types import StringType, StructField, StructType

    return StructType([StructField(f.name, _shadow(f.dataType)) for f in schema.fields]
                      + [StructField(CORRUPT, StringType())])


def _shadow(dtype: "DataType") -> "DataType":
    from pyspark.sql.types import (ArrayType, DateType, DecimalType, MapType, StringType, StructField, StructType,
                                   TimestampNTZType, TimestampType, VariantType)

    if isinstance(dtype, (TimestampType, TimestampNTZType, DateType)):
        return StringType()
    if isinstance(dtype, DecimalType):
        return VariantType()
    if isinstance(dtype, StructType):
        return StructType([StructField(f.name, _shadow(f.dataType)) for f in dtype.fields])
    if isinstance(dtype, ArrayType):
        return ArrayType(_shadow(dtype.elementType))
    if isinstance(dtype, MapType):
        return MapType(dtype.keyType, _shadow(dtype.valueType))
    return dtype


def needs_conversion(dtype: "DataType") -> bool:
    """True when ``dtype`` holds a time or decimal leaf (its shadow differs)."""
    return _shadow(dtype) != dtype


def convert_record(record: "Column", schema: "StructType", rules: ValueRules,
                   converted: "Column | None" = None) -> tuple["Column", list["Column"]]:
    """(converted record, problem columns) of a record parsed with :func:`shadow_schema`.

    ``converted``: the column the caller stores the converted record in. The
    problems then read each converted leaf from it instead of converting it
    again (outside arrays and maps), so every leaf is converted once per row.
    A leaf outside the plausible years keeps its value in the record: the row is
    refused by its problem, never written as a valid row.

    A problem column is a sentence naming the field path, or null. The converted
    record is null when ``record`` is; its NOT NULL fields are non-nullable.
    """
    problems: list[Column] = []
    fields = [_convert(record[f.name], f.dataType, f.name, rules, problems,
                       None if converted is None else converted[f.name]) for f in schema.fields]
    return _struct(record, schema, fields), problems


def converted_fields(record: "Column", schema: "StructType", rules: ValueRules) -> list["Column"]:
    """The converted top-level fields of a record parsed with :func:`shadow_schema`, in schema order.

    The fields :func:`convert_record` puts in its record (null where ``record``
    is null), as separate columns: a caller that stores each in a column of its
    own and passes a struct of them as ``converted`` converts every leaf once.
    """
    unused: list[Column] = []
    return [_convert(record[f.name], f.dataType, f.name, rules, unused) for f in schema.fields]


def mark_required(record: "Column", schema: "StructType") -> "Column":
    """``record`` (a converted record) with its NOT NULL fields, at any struct depth, marked non-nullable."""
    from pyspark.sql import functions as F

    fields = [_non_nullable(_marked(record[f.name], f.dataType), f.dataType) if not f.nullable
              else _marked(record[f.name], f.dataType) for f in schema.fields]
    # the record itself is never null (a field read from a nullable struct would be nullable again)
    return F.struct(*[c.alias(f.name) for c, f in zip(fields, schema.fields, strict=True)])


def _marked(col: "Column", dtype: "DataType") -> "Column":
    from pyspark.sql.types import StructType

    if not isinstance(dtype, StructType):
        return col
    fields = [_non_nullable(_marked(col[f.name], f.dataType), f.dataType) if not f.nullable
              else _marked(col[f.name], f.dataType) for f in dtype.fields]
    return _struct(col, dtype, fields)


def required_missing(record: "Column", schema: "StructType") -> list["Column"]:
    """One condition per NOT NULL field (nested in structs too): true when it is null where its parent is not."""
    from pyspark.sql.types import StructType

    found: list[Column] = []
    for f in schema.fields:
        if not f.nullable:
            found.append(record.isNotNull() & record[f.name].isNull())
        if isinstance(f.dataType, StructType):
            found.extend(required_missing(record[f.name], f.dataType))
        else:
            found.extend(required_missing_in_elements(record[f.name], f.dataType))
    return found


def required_missing_in_elements(col: "Column", dtype: "DataType") -> list["Column"]:
    """For an array or map of structs with NOT NULL fields: true when an element lacks one (at any depth)."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(dtype, ArrayType):
        element, elements = dtype.elementType, col
    elif isinstance(dtype, MapType):
        element, elements = dtype.valueType, F.map_values(col)
    else:
        return []
    if not _has_required(element):
        return []

    def missing(x: "Column") -> "Column":
        inner = required_missing(x, element) if isinstance(element, StructType) else \
            required_missing_in_elements(x, element)
        return reduce(lambda a, b: a | b, inner)

    return [F.coalesce(F.exists(elements, missing), F.lit(False))]


def _has_required(dtype: "DataType") -> bool:
    """True when ``dtype`` is, or holds at any depth, a struct with a NOT NULL field."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(dtype, StructType):
        return any(not f.nullable or _has_required(f.dataType) for f in dtype.fields)
    if isinstance(dtype, ArrayType):
        return _has_required(dtype.elementType)
    if isinstance(dtype, MapType):
        return _has_required(dtype.valueType)
    return False


def _struct(record: "Column", schema: "StructType", fields: list["Column"]) -> "Column":
    from pyspark.sql import functions as F

    # one branch and no ELSE: the struct keeps its fields' nullability (a NULL branch would make them nullable)
    return F.when(record.isNotNull(), F.struct(*[c.alias(f.name) for c, f in zip(fields, schema.fields, strict=True)]))


def _convert(col: "Column", dtype: "DataType", path: str, rules: ValueRules, problems: list["Column"],
             converted: "Column | None" = None) -> "Column":
    from pyspark.sql import functions as F
    from pyspark.sql.types import (ArrayType, DateType, DecimalType, MapType, StructType, TimestampNTZType,
                                   TimestampType)

    if not needs_conversion(dtype):
        return col
    if isinstance(dtype, TimestampType):
        return _time(col, path, problems, "timestamp", ISO_TIMESTAMP, rules, rules.timestamp_units.get(path),
                     converted)
    if isinstance(dtype, TimestampNTZType):
        return _time(col, path, problems, "timestamp_ntz", ISO_TIMESTAMP_NTZ, rules, None, converted)
    if isinstance(dtype, DateType):
        return _time(col, path, problems, "date", ISO_DATE, rules, None, converted)
    if isinstance(dtype, DecimalType):
        return _decimal(col, dtype, path, problems)
    if isinstance(dtype, StructType):
        fields = [_convert(col[f.name], f.dataType, f"{path}.{f.name}", rules, problems,
                           None if converted is None else converted[f.name]) for f in dtype.fields]
        return _struct(col, dtype, fields)
    element = dtype.elementType if isinstance(dtype, ArrayType) else cast(MapType, dtype).valueType
    inner: list[Column] = []

    def convert_one(x: "Column") -> "Column":
        return _convert(x, element, f"{path}[]", rules, inner)

    def problem_of(x: "Column") -> "Column":
        found: list[Column] = []
        _convert(x, element, f"{path}[]", rules, found)
        if not found:  # no time or decimal leaf inside (an element that differs only by NOT NULL)
            return F.lit(None).cast("string")
        return F.coalesce(*found) if len(found) > 1 else found[0]

    if isinstance(dtype, ArrayType):
        converted = F.transform(col, convert_one)
        bad = F.filter(F.transform(col, problem_of), lambda p: p.isNotNull())
    else:
        assert isinstance(dtype, MapType)
        converted = F.transform_values(col, lambda _k, v: convert_one(v))
        bad = F.filter(F.transform(F.map_values(col), problem_of), lambda p: p.isNotNull())
    problems.append(F.when(F.size(bad) > 0, bad[0]))
    return converted


def _time(col: "Column", path: str, problems: list["Column"], kind: str, pattern: str, rules: ValueRules,
          unit: str | None, converted: "Column | None") -> "Column":
    from pyspark.sql import functions as F

    text = col
    value = F.when(text.rlike(pattern), text.try_cast(kind))
    if unit is not None:
        value = F.coalesce(value, F.when(text.rlike(_EPOCH_INTEGER),
                                         getattr(F, UNITS[unit])(text.try_cast("long"))))
    low, high = _bounds(rules.years, kind)
    shown = _shown(text)
    accepted = "an ISO-8601 " + ("date (YYYY-MM-DD)" if kind == "date" else "date-time")
    if unit is not None:
        accepted += f" or an integer number of {unit} since 1970-01-01T00:00:00Z"
    elif kind == "timestamp":
        accepted += " (an epoch number needs a declared unit: timestamp_units)"
    quoted = f"'{path}'"
    done = value if converted is None else converted  # converted once, read back by the problem
    problems.append(
        F.when(text.isNull(), F.lit(None))
         .when(done.isNull(), F.concat(F.lit(f"field {quoted} expected {accepted}, got "), shown))
         .when((done < low) | (done >= high),
               F.concat(F.lit(f"field {quoted} is outside the years {rules.years[0]}..{rules.years[1]}: "), shown)))
    return value


def _bounds(years: tuple[int, int], kind: str) -> tuple["Column", "Column"]:
    """[first instant of the first year, first instant after the last year) as literals of ``kind``."""
    from pyspark.sql import functions as F

    epoch = dt.date(1970, 1, 1).toordinal()
    low_days = dt.date(years[0], 1, 1).toordinal() - epoch
    high_days = dt.date(years[1], 12, 31).toordinal() + 1 - epoch
    if kind == "date":
        return F.date_from_unix_date(F.lit(low_days)), F.date_from_unix_date(F.lit(high_days))
    low = F.timestamp_micros(F.lit(low_days * 86_400_000_000))
    high = F.timestamp_micros(F.lit(high_days * 86_400_000_000))
    if kind == "timestamp_ntz":
        return F.to_timestamp_ntz(F.date_from_unix_date(F.lit(low_days))), \
            F.to_timestamp_ntz(F.date_from_unix_date(F.lit(high_days)))
    return low, high


def _decimal(col: "Column", dtype: Any, path: str, problems: list["Column"]) -> "Column":
    """A DECIMAL leaf from its variant: plain-notation numbers (or such strings) that fit without rounding."""
    from pyspark.sql import functions as F

    precision, scale = dtype.precision, dtype.scale
    present = col.isNotNull() & ~F.is_variant_null(col)
    text = F.try_variant_get(col, "$", "string")
    fraction = rf"(\.\d{{0,{scale}}}0*)?" if scale else r"(\.0*)?"
    plain = text.rlike(rf"^-?\d+{fraction}$") & ~F.schema_of_variant(col).startswith("DOUBLE")
    value = F.when(present & plain, text.try_cast(dtype.simpleString()))
    type_name = dtype.simpleString()
    problems.append(F.when(present & value.isNull(), F.concat(
        F.lit(f"field '{path}' expected {type_name} (a number in plain notation with at most {scale} decimal "
              f"places and {precision - scale} integer digits), got "), _shown(F.to_json(col)))))
    return value


def _shown(text: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.when(F.length(text) > _MAX_SHOWN, F.concat(F.substring(text, 1, _MAX_SHOWN), F.lit("..."))) \
        .otherwise(text)


def _non_nullable(value: "Column", dtype: "DataType") -> "Column":
    """``value`` marked non-nullable (a coalesce with a typed constant that a valid row never reaches)."""
    from pyspark.sql import functions as F

    default = _default(dtype)
    return value if default is None else F.coalesce(value, default)


def _default(dtype: "DataType") -> "Column | None":
    from pyspark.sql import functions as F
    from pyspark.sql.types import (BinaryType, BooleanType, DateType, DecimalType, NumericType, StringType,
                                   StructType, TimestampNTZType, TimestampType)

    if isinstance(dtype, DecimalType):
        return F.lit(Decimal(0).scaleb(-dtype.scale))
    if isinstance(dtype, NumericType):
        return F.lit(0).cast(dtype)
    if isinstance(dtype, StringType):
        return F.lit("")
    if isinstance(dtype, BooleanType):
        return F.lit(False)
    if isinstance(dtype, BinaryType):
        return F.lit(bytearray())
    if isinstance(dtype, TimestampType):
        return F.lit(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
    if isinstance(dtype, TimestampNTZType):
        return F.lit(dt.datetime(1970, 1, 1))
    if isinstance(dtype, DateType):
        return F.lit(dt.date(1970, 1, 1))
    if isinstance(dtype, StructType):
        parts = [_default(f.dataType) for f in dtype.fields]
        if any(p is None for p in parts):
            return None
        return F.struct(*[p.alias(f.name) for p, f in zip(parts, dtype.fields, strict=True)])  # type: ignore[union-attr]
    return None  # arrays and maps stay nullable in the written schema


Check = Callable[["Column"], "Column"]
