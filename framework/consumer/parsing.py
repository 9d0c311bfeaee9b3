"""Parse Kafka values as JSON records and split them into valid rows and quarantine rows.

Pure DataFrame functions: they work on a streaming micro-batch and on a static
DataFrame alike, so a schema can be unit-tested without a broker (see
:mod:`framework.testing.consumer`).

Column contract
---------------
Input (:func:`kafka_frame` builds it from Spark's Kafka source): the raw value
as a string in ``raw_value`` plus the Kafka metadata columns below.

Valid rows: the top-level fields of the schema, in schema order, followed by the
metadata columns

=================== ========= ==============================================
``kafka_topic``     string    topic the record was read from
``kafka_partition`` int       partition
``kafka_offset``    bigint    offset in the partition (unique per partition)
``kafka_timestamp`` timestamp Kafka record timestamp (producer or log time)
``kafka_key``       string    record key (UTF-8), null when the record has none
=================== ========= ==============================================

These names are *reserved*: a schema that declares a field with one of them
(compared case-insensitively, as Spark does) is refused with
:class:`~framework.errors.DeclarationError`, so record fields and metadata can
never clash.

Quarantine rows: ``raw_value`` (string), ``kafka_topic``, ``kafka_partition``,
``kafka_offset``, ``kafka_timestamp`` and ``reason``, one sentence such as

- ``empty value``
- ``not valid JSON``
- ``not a JSON object (got an array)``
- ``missing required field 'id'`` / ``required field 'id' is null``
- ``field 'val' expected double, got "abc"`` (several problems are joined by ``; ``)

What is checked: the value must be a JSON object; every *top-level* field that
is present and not JSON ``null`` must parse to its declared type (Spark's JSON
rules: ``"4"`` is not an int, ``4`` is a valid double, any value is a valid
string); a field declared NOT NULL (``nullable=False``) must be present and not
``null``. Fields that are not in the schema are ignored. Inside nested structs
Spark's permissive parsing applies (an unparsable leaf becomes null).

To split one topic into several tables by the value of a field, each with its
own schema, see :mod:`framework.consumer.routing` (same columns, same reasons).
"""
from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

from framework.consumer.values import (CORRUPT, STRICT_JSON_OPTIONS, ValueRules, convert_record, converted_fields,
                                       mark_required, needs_conversion, required_missing,
                                       required_missing_in_elements, shadow_schema)
from framework.errors import DeclarationError

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

SchemaLike = Union["StructType", str]

RAW_COLUMN = "raw_value"
REASON_COLUMN = "reason"
METADATA_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "kafka_key")
QUARANTINE_COLUMNS = (RAW_COLUMN, "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
                      REASON_COLUMN)
RESERVED_NAMES = frozenset(n.lower() for n in (*METADATA_COLUMNS, RAW_COLUMN, REASON_COLUMN))

# internal working columns, dropped before anything is written
_RECORD = "__pipeline_record"
_REASON = "__pipeline_reason"
_BAD = "__pipeline_bad"
_END = "__pipeline_end"  # the element after the value in the one-parse check (see check_records)
_MAX_SHOWN = 80  # characters of an offending value quoted in a reason


def kafka_frame(df: "DataFrame") -> "DataFrame":
    """Rename the columns of Spark's Kafka source into ``raw_value`` + the metadata columns."""
    from pyspark.sql import functions as F

    return df.select(
        F.col("value").cast("string").alias(RAW_COLUMN),
        F.col("topic").alias("kafka_topic"),
        F.col("partition").cast("int").alias("kafka_partition"),
        F.col("offset").cast("long").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").cast("string").alias("kafka_key"),
    )


def check_schema_per_name(label: str, lead: str, schema: Mapping[str, Any], names: Sequence[str], outside: str) -> None:
    """Check that ``schema`` (a dict) has exactly one valid schema for each of ``names``.

    The error reads ``"<lead>; missing: 'a'; <outside>: 'b'."``; each schema is
    checked as ``<label>[<name>]``. Raises :class:`DeclarationError`.
    """
    missing = [n for n in names if n not in schema]
    extra = [n for n in schema if n not in names]
    if missing or extra:
        raise DeclarationError(
            f"{lead}; "
            + (f"missing: {', '.join(map(repr, missing))}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"{outside}: {', '.join(map(repr, extra))}" if extra else "") + ".")
    for name in names:
        check_schema(schema[name], f"{label}[{name!r}]")


def check_schema(schema: Any, owner: str = "schema") -> None:
    """Check what can be checked without Spark; raise :class:`DeclarationError` naming ``owner``.

    A ``StructType`` must have at least one field and no reserved name; a DDL
    string must be non-empty (it is parsed by :func:`resolve_schema`, which
    needs a running Spark).
    """
    from pyspark.sql.types import StructType

    if isinstance(schema, str):
        if not schema.strip():
            raise DeclarationError(f"{owner} is an empty DDL string; declare fields like "
                                   "'id INT NOT NULL, time TIMESTAMP, val DOUBLE'.")
        return
    if not isinstance(schema, StructType):
        raise DeclarationError(
            f"{owner} must be a pyspark StructType or a DDL string like 'id INT NOT NULL, val DOUBLE', "
            f"not {type(schema).__name__} {schema!r}.")
    if not schema.fields:
        raise DeclarationError(f"{owner} declares no fields; a record needs at least one.")
    clashes = [f.name for f in schema.fields if f.name.lower() in RESERVED_NAMES]
    if clashes:
        raise DeclarationError(
            f"{owner} declares field(s) {', '.join(map(repr, clashes))}, which are reserved for the "
            f"Kafka metadata and quarantine columns ({', '.join(sorted(RESERVED_NAMES))}); rename them.")
    names = [f.name.lower() for f in schema.fields]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DeclarationError(f"{owner} declares field(s) {', '.join(map(repr, dupes))} more than once.")


def resolve_schema(schema: SchemaLike, spark: "SparkSession | None" = None, owner: str = "schema") -> "StructType":
    """``schema`` as a checked ``StructType``; a DDL string is parsed with Spark's own parser.

    Parsing a DDL string needs an active SparkSession (``spark`` or the active one).
    """
    from pyspark.sql.types import StructType

    check_schema(schema, owner)
    if isinstance(schema, StructType):
        return schema
    from pyspark import SparkContext

    if spark is None and SparkContext._active_spark_context is None:
        raise DeclarationError(f"{owner} {schema!r} is a DDL string, which only a running Spark can parse; "
                               "pass spark= or declare a StructType.")
    try:
        parsed = StructType.fromDDL(schema)
    except Exception as exc:  # noqa: BLE001 - Spark's ParseException, reported as a sentence
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeclarationError(f"{owner} {schema!r} is not a valid Spark DDL schema: {first}") from None
    if not isinstance(parsed, StructType):
        raise DeclarationError(f"{owner} {schema!r} is a single type, not a list of fields like 'id INT, val DOUBLE'.")
    check_schema(parsed, owner)
    return parsed


def parse_records(df: "DataFrame", schema: "StructType", rules: ValueRules | None = None) -> "DataFrame":
    """``df`` plus a parsed-record column and a reason column (null for a valid row).

    ``df`` must have a ``raw_value`` column (string or binary). The result is
    meant to be split with :func:`split_parsed` (or observed and filtered in one
    pass). Each value is tokenized once (see :func:`check_records`) and checked
    against ``docs/parse-contract.md`` with cheap column expressions; only a row
    that fails a check, or has a null leaf, is read again (to tell "absent" from
    "wrong type" and name the field). ``rules``: declared timestamp units and the
    plausible years.
    """
    from pyspark.sql import functions as F

    df = df.withColumn(RAW_COLUMN, F.col(RAW_COLUMN).cast("string"))
    return check_records(df, schema, rules or ValueRules(), _RECORD, _BAD, _REASON)


def check_records(df: "DataFrame", schema: "StructType", rules: ValueRules, record_column: str,
                  bad_column: str, reason_column: str, only: "Column | None" = None) -> "DataFrame":
    """``df`` (with a string ``raw_value``) plus ``record_column``, ``bad_column`` and ``reason_column``.

    ``bad_column`` is true for a row the contract refuses, ``reason_column`` holds
    its sentence (null for a valid row). Filter on ``bad_column``: a query that
    does not select the reason does not compute it (Spark prunes the column), so
    the valid rows' stage stays small enough for the JVM to compile.
    ``only``: a condition selecting the rows to parse (the others get nulls;
    routing parses each row with its own table's schema).

    One parse reads the value and proves that nothing but whitespace follows it.
    A value without a ``]`` byte is parsed as ``[`` + value + ``]``: one JSON
    value gives one element, anything else after it gives a second element or
    breaks the array (only a ``]`` could close the array early). Any other value
    is parsed as ``[`` + value + ``,{"__pipeline_end": h}]``, where ``h`` is its
    64-bit xxHash: exactly one JSON value gives two elements, the second carrying
    ``h``; a value with more after it either breaks the array or closes it early,
    and cannot carry its own hash. Each top-level field is then converted once
    into a column of its own, which the checks read back.
    Spark marks no corrupt record inside an array, so a row with a null leaf is
    read once more as a variant to tell an absent value from a wrong type (a
    conditional branch: Spark evaluates it, and hoists nothing out of it, only for
    such rows). The parse is the only step Spark does not compile to Java (its
    ``from_json`` has no code generation); every check runs in a generated stage.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, LongType, StructField, StructType

    raw = F.col(RAW_COLUMN)
    shadow_type = shadow_schema(schema)
    element = ArrayType(StructType([*shadow_type.fields, StructField(_END, LongType())]))
    end = F.xxhash64(raw)
    plain = ~raw.contains("]")  # no "]" in the value: nothing after it can close the array early
    wrapped = F.when(plain, F.from_json(F.concat(F.lit("["), raw, F.lit("]")), element, STRICT_JSON_OPTIONS)).otherwise(
        F.from_json(F.concat(F.lit("["), raw, F.lit(f',{{"{_END}":'), end.cast("string"), F.lit("}]")), element,
                    STRICT_JSON_OPTIONS))
    wrapped_column = f"{record_column}_wrapped"
    df = df.withColumn(wrapped_column, wrapped if only is None else F.when(only, wrapped))
    wrapped = F.col(wrapped_column)
    one = F.coalesce(F.when(plain, F.size(wrapped) == 1)
                      .otherwise((F.size(wrapped) == 2) & (F.get(wrapped, 1)[_END] == end)), F.lit(False))
    shadow = F.get(wrapped, 0)  # null for an empty array ("[]" of an empty value), where [0] would fail
    # each top-level field converted once, into a column of its own (read back by the checks below)
    leaves = [f"{record_column}_{i}" for i in range(len(schema.fields))]
    df = df.withColumns(dict(zip(leaves, converted_fields(shadow, schema, rules), strict=True)))
    checked = F.struct(*[F.col(c).alias(f.name) for c, f in zip(leaves, schema.fields, strict=True)])
    _, problems = convert_record(shadow, schema, rules, checked)
    values = F.try_parse_json(raw)
    wrong = F.when(_holes(shadow, shadow_type), _wrong_type(checked, schema, values)).otherwise(F.lit(False))
    bad = reduce(lambda a, b: a | b, [~one, shadow.isNull(), wrong, *[p.isNotNull() for p in problems],
                                      *required_missing(checked, schema)])
    df = (df.withColumn(record_column, mark_required(checked, schema))
            .withColumn(bad_column, bad if only is None else F.when(only, bad)))
    reason = F.when(F.col(bad_column), _reason(raw, values, one, checked, schema, problems))
    return df.withColumn(reason_column, reason).drop(wrapped_column, *leaves)


def _wrong_type(record: "Column", schema: "StructType", values: "Column") -> "Column":
    """True when a value of the JSON object ``values`` is present but did not convert (at any depth)."""
    from pyspark.sql import functions as F

    found = [_wrong_node(record[f.name], f.dataType, _member(values, f.name)) for f in schema.fields]
    return reduce(lambda a, b: a | b, found, F.lit(False))


def _member(json: "Column", name: str) -> "Column":
    """The member ``name`` of the JSON object ``json`` (a variant; null when absent or not an object)."""
    from pyspark.sql import functions as F

    return F.try_variant_get(json, f"$['{name}']", "variant")


def _wrong_node(typed: "Column", dtype: Any, json: "Column") -> "Column":
    """True when the JSON value ``json`` (a variant, null when absent) is present but ``typed`` lost some of it.

    Structs are recursed field by field, and arrays and maps of structs, arrays or
    maps element by element (an element ``{"v": "x"}`` of ``ARRAY<STRUCT<v: INT>>``
    parses as a struct with a null field, not as a null element). A time or decimal
    leaf is left out: its problem comes from the conversion.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    present = json.isNotNull() & ~F.is_variant_null(json)
    if isinstance(dtype, StructType):
        parts = [present & ~F.upper(F.schema_of_variant(json)).startswith("OBJECT")]
        parts += [_wrong_node(typed[f.name], f.dataType, _member(json, f.name)) for f in dtype.fields]
        return reduce(lambda a, b: a | b, parts)
    inner = _wrong_elements(typed, dtype, json)
    if needs_conversion(dtype):
        return inner  # a time or decimal leaf, or a container of them: the conversion names its problem
    return (present & (typed.isNull() | _lost_elements(typed, dtype, json))) | inner


def _wrong_elements(typed: "Column", dtype: Any, json: "Column") -> "Column":
    """For an array or map of structs, arrays or maps: True when an element lost some of its JSON value."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StringType, StructType

    nested = (StructType, ArrayType, MapType)
    if isinstance(dtype, ArrayType) and isinstance(dtype.elementType, nested):
        elements = F.try_variant_get(json, "$", "array<variant>")
        pairs = F.zip_with(typed, elements, lambda t, j: _wrong_node(t, dtype.elementType, j))
    elif isinstance(dtype, MapType) and isinstance(dtype.valueType, nested) and isinstance(dtype.keyType, StringType):
        members = F.try_variant_get(json, "$", "map<string,variant>")
        pairs = F.map_values(F.map_zip_with(typed, members, lambda _, t, j: _wrong_node(t, dtype.valueType, j)))
    else:
        return F.lit(False)
    return F.coalesce(F.exists(pairs, lambda wrong: wrong), F.lit(False))


def _lost_elements(typed: "Column", dtype: Any, json: "Column") -> "Column":
    """For an array or map: more null elements in ``typed`` than JSON nulls in ``json`` (an element did not convert)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType

    if isinstance(dtype, ArrayType):
        typed_values, json_values = typed, F.try_variant_get(json, "$", "array<variant>")
    elif isinstance(dtype, MapType):
        typed_values = F.map_values(typed)
        json_values = F.map_values(F.try_variant_get(json, "$", "map<string,variant>"))
    else:
        return F.lit(False)
    nulls = F.size(F.filter(typed_values, lambda x: x.isNull()))
    return nulls > F.size(F.filter(json_values, lambda x: F.is_variant_null(x)))


def _holes(value: "Column", dtype: "DataType") -> "Column":
    """True when ``value`` (parsed as ``dtype``) has a null at any depth: a field, an element, a map value."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    if isinstance(dtype, StructType):
        parts = [_holes(value[f.name], f.dataType) for f in dtype.fields if f.name != CORRUPT]
        return value.isNull() | reduce(lambda a, b: a | b, parts, F.lit(False))
    if isinstance(dtype, ArrayType):
        return value.isNull() | F.exists(value, lambda x: _holes(x, dtype.elementType))
    if isinstance(dtype, MapType):
        return value.isNull() | F.exists(F.map_values(value), lambda x: _holes(x, dtype.valueType))
    return value.isNull()


def split_parsed(parsed: "DataFrame") -> tuple["DataFrame", "DataFrame"]:
    """(valid rows, quarantine rows) of a :func:`parse_records` result (see the column contract)."""
    return valid_rows(parsed), quarantine_rows(parsed)


def valid_rows(parsed: "DataFrame") -> "DataFrame":
    """The rows of a :func:`parse_records` result without a reason: the record's fields + the metadata."""
    from pyspark.sql import functions as F

    meta = [c for c in METADATA_COLUMNS if c in parsed.columns]
    return parsed.where(~F.col(_BAD)).select(f"{_RECORD}.*", *meta)


def required_kept(output: "StructType", declared: "StructType") -> "StructType":
    """``output`` with the NOT NULL of ``declared`` restored on the columns it passes through unchanged.

    Parsing guarantees a required field is present and not null in every valid
    row, but ``from_json`` reports every field as nullable; a writer that creates
    tables uses this schema to keep NOT NULL.
    """
    from pyspark.sql.types import StructField, StructType

    required = {f.name: f.dataType for f in declared.fields if not f.nullable}
    return StructType([StructField(f.name, f.dataType, False, f.metadata)
                       if f.nullable and required.get(f.name) == f.dataType else f for f in output.fields])


def quarantine_rows(parsed: "DataFrame") -> "DataFrame":
    """The rows of a parse result that have a reason, with the quarantine columns (shared with routing)."""
    from pyspark.sql import functions as F

    quarantine_cols = [F.col(_REASON).alias(REASON_COLUMN) if c == REASON_COLUMN else F.col(c)
                       for c in QUARANTINE_COLUMNS if c in parsed.columns or c == REASON_COLUMN]
    return parsed.where(F.col(_BAD)).select(*quarantine_cols)


def split_valid_invalid(df: "DataFrame", schema: SchemaLike,
                        rules: ValueRules | None = None) -> tuple["DataFrame", "DataFrame"]:
    """Parse ``df.raw_value`` with ``schema``: (valid rows, quarantine rows).

    Every input row lands in exactly one of the two frames. ``schema`` may be a
    DDL string (parsed with ``df``'s session).
    """
    return split_parsed(parse_records(df, resolve_schema(schema, df.sparkSession), rules))


def count_parsed(parsed: "DataFrame") -> tuple[int, int]:
    """(valid, quarantined) row counts of a :func:`parse_records` result, in one Spark job."""
    row = parsed.agg(*_count_columns()).collect()[0]
    return int(row["valid"] or 0), int(row["invalid"] or 0)


def _count_columns() -> list["Column"]:
    """The aggregates ``valid`` and ``invalid`` (rows without / with a reason) of a parse result."""
    from pyspark.sql import functions as F

    return [F.count_if(~F.col(_BAD)).alias("valid"), F.count_if(F.col(_BAD)).alias("invalid")]


def observe_counts(parsed: "DataFrame") -> tuple[Any, "DataFrame"]:
    """(observation, frame): ``parsed`` with its valid and quarantined rows counted as it is computed.

    The counts are ready (:func:`observed_counts`) once an action has computed
    *every* row of the frame (a full write does; ``show()`` or ``limit()`` do
    not). The observation also keeps Spark from pushing the valid-row filter
    below the parse, where it would parse each value once per field.
    """
    from pyspark.sql import Observation

    observation = Observation()
    return observation, parsed.observe(observation, *_count_columns())


def observed_counts(observation: Any) -> tuple[int, int]:
    """(valid, quarantined) from an :func:`observe_counts` observation, after the action."""
    row = observation.get
    return int(row.get("valid") or 0), int(row.get("invalid") or 0)


# --------------------------------------------------------------------------- reasons
def _reason(raw: "Column", values: "Column", one: "Column", record: "Column", schema: "StructType",
            problems: list["Column"]) -> "Column":
    """The sentence of a row the contract refuses."""
    from pyspark.sql import functions as F

    detail = (F.when(raw.isNull() | (F.trim(raw) == ""), F.lit("empty value"))
               .when(values.isNull(), _not_object_reason(raw))
               .when(~F.upper(F.schema_of_variant(values)).startswith("OBJECT"), _not_object_reason(raw))
               .when(~one, F.lit("more than one JSON value (only whitespace may follow the object)"))
               .otherwise(_leaf_problems(record, schema, values, problems)))
    return F.coalesce(detail, F.lit("a value does not fit the schema"))


def _leaf_problems(record: "Column", schema: "StructType", values: "Column", problems: list["Column"]) -> "Column":
    """Every problem of a JSON object, in schema order, joined by ``; ``; null when there is none."""
    from pyspark.sql import functions as F

    found: list["Column"] = []
    for f in schema.fields:
        _walk(record[f.name], f.dataType, f.nullable, [f.name], values, found)
    return F.nullif(F.concat_ws("; ", *found, *problems), F.lit(""))


def _walk(typed: "Column", dtype: Any, nullable: bool, path: list[str], values: "Column",
          found: list["Column"]) -> None:
    """Reasons of one field: missing/null when required, wrong type when it did not convert (structs recursed)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    json = F.try_variant_get(values, "$" + "".join(f"['{p}']" for p in path), "variant")
    name = _quote(".".join(path))
    present = json.isNotNull() & ~F.is_variant_null(json)
    if not nullable:
        found.append(F.when(typed.isNull() & json.isNull(), F.lit(f"missing required field {name}"))
                     .when(typed.isNull() & F.is_variant_null(json), F.lit(f"required field {name} is null")))
    lacking = required_missing_in_elements(typed, dtype)
    if lacking:
        found.append(F.when(lacking[0], F.lit(f"an element of field {name} lacks a required (NOT NULL) field")))
    shown = _shown(F.to_json(json))
    wrong = F.concat(F.lit(f"field {name} expected {dtype.simpleString()}, got "), shown)
    if needs_conversion(dtype) and not isinstance(dtype, StructType):
        # a time or decimal leaf (or a container of them): its problem comes from the conversion; an element
        # of another type inside a container of them is named here
        found.append(F.when(_wrong_elements(typed, dtype, json), wrong))
        return
    if isinstance(dtype, StructType):
        is_object = F.upper(F.schema_of_variant(json)).startswith("OBJECT")
        found.append(F.when(present & ~is_object, wrong))
        for f in dtype.fields:
            _walk(typed[f.name], f.dataType, f.nullable, [*path, f.name], values, found)
        return
    found.append(F.when(present & (typed.isNull() | _lost_elements(typed, dtype, json))
                        | _wrong_elements(typed, dtype, json), wrong))


def _shown(text: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.when(F.length(text) > _MAX_SHOWN, F.concat(F.substring(text, 1, _MAX_SHOWN), F.lit("..."))) \
        .otherwise(text)


def _not_object_reason(raw: "Column") -> "Column":
    from pyspark.sql import functions as F

    parsed = F.try_parse_json(raw)
    kind = F.upper(F.schema_of_variant(parsed))
    got = (F.when(kind.startswith("ARRAY"), F.lit("an array"))
            .when(kind.startswith("STRING"), F.lit("a string"))
            .when(kind.startswith("BOOLEAN"), F.lit("a boolean"))
            .when(kind.startswith("VOID"), F.lit("null"))
            .otherwise(F.lit("a number")))
    return (F.when(parsed.isNull(), F.lit("not valid JSON"))
             .otherwise(F.concat(F.lit("not a JSON object (got "), got, F.lit(")"))))


def _quote(name: str) -> str:
    return "'" + name.replace("'", "\\'") + "'"


def schemas_by_topic(schema: SchemaLike | Mapping[str, SchemaLike], topics: list[str]) -> dict[str, SchemaLike]:
    """One schema per topic from a consumer's ``schema`` attribute (a single one or a dict)."""
    if isinstance(schema, Mapping):
        return {topic: schema[topic] for topic in topics}
    return {topic: schema for topic in topics}
