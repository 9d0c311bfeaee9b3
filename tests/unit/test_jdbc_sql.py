"""The JDBC sink without a database: type mapping, SQL text, declaration checks."""
from __future__ import annotations

import pytest
from pyspark.sql import types as T

from framework.errors import SinkSchemaError
from framework.sinks import jdbc_sql as q
from framework.sinks.aggregates import Aggregation, Measure, count, max_, min_, sum_
from framework.sinks.jdbc import JdbcWriter, PostgresWriter, staging_name


@pytest.mark.parametrize("spark_type, expected", [
    (T.BooleanType(), "boolean"), (T.ByteType(), "smallint"), (T.ShortType(), "smallint"),
    (T.IntegerType(), "integer"), (T.LongType(), "bigint"), (T.FloatType(), "real"),
    (T.DoubleType(), "double precision"), (T.DecimalType(12, 3), "numeric(12,3)"), (T.StringType(), "text"),
    (T.VarcharType(20), "character varying(20)"), (T.CharType(3), "character(3)"), (T.BinaryType(), "bytea"),
    (T.DateType(), "date"), (T.TimestampType(), "timestamp with time zone"),
    (T.TimestampNTZType(), "timestamp without time zone"),
])
def test_type_mapping(spark_type, expected):
    assert q.pg_type(spark_type, "f") == expected


@pytest.mark.parametrize("spark_type", [T.ArrayType(T.IntegerType()), T.MapType(T.StringType(), T.StringType()),
                                        T.StructType([T.StructField("a", T.IntegerType())])])
def test_nested_types_are_refused_with_the_field_name(spark_type):
    with pytest.raises(SinkSchemaError, match="Field 'tags' has Spark type .* to_json"):
        q.pg_type(spark_type, "tags")


def test_not_null_is_kept_in_create_table():
    schema = T.StructType([T.StructField("id", T.LongType(), nullable=False),
                           T.StructField("amount", T.DecimalType(10, 2)), T.StructField("at", T.TimestampType())])
    sql = q.create_table("orders", q.columns_of(schema), key=["id"])
    assert sql == ('CREATE TABLE IF NOT EXISTS "orders" ("id" bigint NOT NULL, "amount" numeric(10,2), '
                   '"at" timestamp with time zone, PRIMARY KEY ("id"))')


def test_identifiers_are_quoted_and_bounded():
    assert q.ident('we"ird') == '"we""ird"'
    with pytest.raises(SinkSchemaError, match="longer than"):
        q.ident("x" * 64)
    assert len(staging_name("t" * 60, "topic")) <= 63


def test_insert_and_upsert_sql():
    assert q.apply_insert("t", "_stg", ["a", "b"]) == 'INSERT INTO "t" ("a", "b") SELECT "a", "b" FROM "_stg"'
    sql = q.apply_upsert("t", "_stg", ["id", "v", "kafka_offset"], ["id"], ["kafka_offset"])
    assert sql == ('INSERT INTO "t" ("id", "v", "kafka_offset") SELECT DISTINCT ON ("id") "id", "v", "kafka_offset" '
                   'FROM "_stg" ORDER BY "id", "kafka_offset" DESC ON CONFLICT ("id") DO UPDATE SET '
                   '"v" = excluded."v", "kafka_offset" = excluded."kafka_offset"')
    assert q.apply_upsert("t", "s", ["id"], ["id"]).endswith('ON CONFLICT ("id") DO NOTHING')


def test_ledger_claim_inserts_once():
    sql = q.ledger_claim()
    assert sql.startswith(f"INSERT INTO {q.LEDGER_TABLE} (consumer, target, batch_id, rows)")
    assert "ON CONFLICT DO NOTHING RETURNING batch_id" in sql
    assert "PRIMARY KEY (consumer, target, batch_id)" in q.metadata_ddl()[0]


@pytest.mark.parametrize("batch, table, fits", [
    ("integer", "integer", True), ("integer", "bigint", True), ("bigint", "integer", False),
    ("real", "double precision", True), ("double precision", "real", False), ("text", "integer", False),
    ("character varying(5)", "text", True), ("timestamp with time zone", "timestamp without time zone", False),
])
def test_type_fits(batch, table, fits):
    assert q.type_fits(batch, table) is fits


def test_check_fit_errors_name_the_column():
    existing = [("id", "bigint", True, False), ("v", "integer", False, False), ("extra", "text", True, False)]
    with pytest.raises(SinkSchemaError, match="Column 'v' of table 't' is integer but the batch has text"):
        q.check_fit("t", [q.Column("id", "bigint"), q.Column("v", "text")], existing)
    with pytest.raises(SinkSchemaError, match="Column 'new' .* is not in the existing table 't'"):
        q.check_fit("t", [q.Column("new", "text")], existing)
    with pytest.raises(SinkSchemaError, match="Column 'extra' of table 't' is NOT NULL without a default"):
        q.check_fit("t", [q.Column("id", "bigint"), q.Column("v", "integer")], existing)
    q.check_fit("t", [q.Column("id", "bigint"), q.Column("v", "smallint"), q.Column("extra", "text")], existing)


def test_aggregate_merge_sql():
    agg = Aggregation("per_zone", ["zone"], {"n": count(), "s": sum_("qty"), "lo": min_("t"), "hi": max_("t")})
    assert agg.merge_sql() == (
        'INSERT INTO "per_zone" AS t ("zone", "n", "s", "lo", "hi") VALUES (%s, %s, %s, %s, %s) '
        'ON CONFLICT ("zone") DO UPDATE SET "n" = t."n" + excluded."n", '
        '"s" = COALESCE(t."s" + excluded."s", t."s", excluded."s"), '
        '"lo" = LEAST(t."lo", excluded."lo"), "hi" = GREATEST(t."hi", excluded."hi")')
    ddl = agg.create_table([q.Column("zone", "text"), q.Column("n", "bigint", True)])
    assert 'UNIQUE NULLS NOT DISTINCT ("zone")' in ddl


def test_aggregate_group_by_expressions():
    agg = Aggregation("per_day", {"day": "to_date(time)"}, {"units": count()}, where="kind = 'unit'")
    assert agg.key == ["day"] and agg.columns() == ["day", "units"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(table="a", group_by=[], measures={"n": count()}), "has no group_by"),
    (dict(table="a", group_by="zone", measures={"n": count()}), "is a string"),
    (dict(table="a", group_by=["zone"], measures={}), "has no measure"),
    (dict(table="a", group_by=["zone"], measures={"zone": count()}), "both as a group column and as a measure"),
    (dict(table="a", group_by=["zone"], measures={"n": "count"}), "measure 'n' is 'count'"),
    (dict(table="a b", group_by=["zone"], measures={"n": count()}), "not a plain name"),
])
def test_aggregation_declaration_checks(kwargs, message):
    with pytest.raises(SinkSchemaError, match=message):
        Aggregation(**kwargs)


def test_measure_checks():
    with pytest.raises(SinkSchemaError, match="cannot be merged by key; use one of count, sum, min, max"):
        Measure("avg", "x")
    with pytest.raises(SinkSchemaError, match=r"sum\(\) needs an expression"):
        Measure("sum")


@pytest.mark.parametrize("kwargs, message", [
    (dict(insert_mode="merge"), "insert_mode='merge' is not known; use one of insert, upsert"),
    (dict(insert_mode="upsert"), "needs pk_fields"),
    (dict(insert_mode="upsert", pk_fields="id"), "is a string"),
    (dict(pk_fields=["id", "id"]), "names a column twice"),
    (dict(table="t", aggregations=[Aggregation("t", ["z"], {"n": count()})]), "table 't' is declared twice"),
    (dict(raw=False), "keeps nothing"),
    (dict(url="mysql://x/y"), "is not a PostgreSQL URL"),
])
def test_writer_declaration_checks(kwargs, message):
    with pytest.raises(Exception, match=message):
        JdbcWriter(**kwargs)


def test_subclass_declaration_is_checked_when_the_class_body_runs():
    with pytest.raises(SinkSchemaError, match="Bad: insert_mode='upsert' needs pk_fields"):
        class Bad(PostgresWriter):
            insert_mode = "upsert"

    class Good(PostgresWriter):
        table, insert_mode, pk_fields = "orders", "upsert", ["id"]

    writer = Good()
    assert writer.table_name("anything") == "orders" and writer.quarantine_table("x") == "orders_quarantine"
    assert writer.owned_tables("x") == ["orders", "orders_quarantine"]


def test_tables_per_topic_and_describe(tmp_path):
    from framework.settings import Settings

    writer = JdbcWriter(tables={"a": "table_a"}, url="postgresql://u:secret@db:5432/prod")
    bound = writer._bind(Settings.from_env().replace(state_dir=tmp_path), "c1")
    assert bound.table_name("a") == "table_a" and bound.table_name("b") == "b"
    assert "secret" not in bound.describe() and "postgresql://u@db:5432/prod" in bound.describe()
    assert bound.quarantine_path("a") is None


def test_a_framework_error_inside_foreach_batch_is_reported_by_its_own_sentence():
    from framework.consumer.queries import first_line

    text = ("[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user provided function.\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in process\n"
            "framework.errors.SinkSchemaError: Column 'id' of table 't' is text but the batch has bigint; change it.\n"
            "\tat org.apache.spark.Something")
    assert first_line(RuntimeError(text)) == "Column 'id' of table 't' is text but the batch has bigint; change it."
    assert first_line(RuntimeError("plain failure\nmore")) == "plain failure"
