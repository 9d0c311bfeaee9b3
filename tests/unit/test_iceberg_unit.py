"""Iceberg writer without services: naming, schema mapping, evolution rules, warehouse URLs, catalog conf."""
from __future__ import annotations

import pytest
from pyspark.sql.types import (DecimalType, DoubleType, FloatType, IntegerType, LongType, StringType, StructField,
                               StructType, TimestampType)

from framework.consumer.parsing import required_kept
from framework.errors import SettingsError
from framework.local.postgres import PostgresTarget
from framework.settings import Settings
from framework.sinks.evolution import Change, SchemaEvolutionError, can_widen, plan_evolution
from framework.sinks.iceberg import IcebergWriter, _column_ddl
from framework.sinks.iceberg_catalog import iceberg_table_name, spark_catalog_conf


def schema(*fields: tuple[str, object, bool]) -> StructType:
    return StructType([StructField(name, t, nullable) for name, t, nullable in fields])


OLD = schema(("id", IntegerType(), False), ("time", TimestampType(), True), ("val", FloatType(), True),
             ("price", DecimalType(10, 2), True))


def test_table_names_follow_the_topic_or_route_table():
    assert iceberg_table_name("metrics") == "metrics"
    assert iceberg_table_name("game-events.v1") == "game_events_v1"
    assert iceberg_table_name("Purchases") == "purchases"
    assert iceberg_table_name("2026-orders") == "t_2026_orders"
    settings = Settings.from_env({}, iceberg_namespace="games")
    writer = IcebergWriter(tables={"metrics": "sensor-metrics"})._bind(settings, "c")
    assert writer.qualified_name("metrics") == "iceberg.games.sensor_metrics"
    assert writer.quarantine_name("metrics") == "iceberg.games.sensor_metrics_quarantine"
    assert writer.qualified_name("workorder") == "iceberg.games.workorder"
    assert writer.quarantine_path("metrics") is None


def test_table_ddl_keeps_not_null_and_spark_types():
    columns = [_column_ddl(f) for f in OLD.fields]
    assert columns == ["`id` int NOT NULL", "`time` timestamp", "`val` float", "`price` decimal(10,2)"]


def test_required_fields_of_the_declared_schema_are_kept_on_the_output():
    declared = schema(("id", IntegerType(), False), ("val", DoubleType(), True))
    parsed = schema(("id", IntegerType(), True), ("val", DoubleType(), True), ("kafka_offset", LongType(), True))
    kept = required_kept(parsed, declared)
    assert [(f.name, f.nullable) for f in kept.fields] == [("id", False), ("val", True), ("kafka_offset", True)]
    changed = schema(("id", StringType(), True))  # a transform changed the type: no promise to keep
    assert required_kept(changed, declared).fields[0].nullable


def test_added_column_is_nullable_and_widening_is_applied():
    new = schema(("id", LongType(), False), ("time", TimestampType(), True), ("val", DoubleType(), True),
                 ("price", DecimalType(12, 2), True), ("extra", StringType(), False))
    changes = plan_evolution("t", OLD, new)
    assert changes == [Change("widen", "id", "bigint", "int"), Change("widen", "val", "double", "float"),
                       Change("widen", "price", "decimal(12,2)", "decimal(10,2)"),
                       Change("add", "extra", "string")]
    assert changes[-1].sql("iceberg.p.t") == "ALTER TABLE iceberg.p.t ADD COLUMN `extra` string"
    assert changes[0].sql("iceberg.p.t") == "ALTER TABLE iceberg.p.t ALTER COLUMN `id` TYPE bigint"


def test_same_schema_needs_no_change_and_names_compare_case_insensitively():
    same = schema(("ID", IntegerType(), False), ("time", TimestampType(), True), ("val", FloatType(), True),
                  ("price", DecimalType(10, 2), True))
    assert plan_evolution("t", OLD, same) == []


def test_required_column_made_optional_is_relaxed_and_optional_column_may_go():
    new = schema(("id", IntegerType(), True), ("val", FloatType(), True), ("price", DecimalType(10, 2), True))
    assert plan_evolution("t", OLD, new) == [Change("relax", "id", "int")]
    assert Change("relax", "id", "int").sql("x") == "ALTER TABLE x ALTER COLUMN `id` DROP NOT NULL"


@pytest.mark.parametrize("old_type,new_type", [
    (DoubleType(), StringType()), (LongType(), IntegerType()), (DoubleType(), FloatType()),
    (DecimalType(10, 2), DecimalType(12, 3)), (DecimalType(10, 2), DecimalType(8, 2)), (IntegerType(), DoubleType()),
])
def test_other_type_changes_are_refused_naming_table_column_and_types(old_type, new_type):
    assert not can_widen(old_type, new_type)
    with pytest.raises(SchemaEvolutionError) as err:
        plan_evolution("iceberg.p.t", schema(("v", old_type, True)), schema(("v", new_type, True)))
    text = str(err.value)
    assert text.startswith(f"Table iceberg.p.t column 'v' is {old_type.simpleString()} but the consumer's schema "
                           f"now says {new_type.simpleString()}")
    assert "write a new column name or a new table" in text and text.count(".") >= 1


def test_dropped_required_field_is_refused():
    new = schema(("time", TimestampType(), True), ("val", FloatType(), True), ("price", DecimalType(10, 2), True))
    with pytest.raises(SchemaEvolutionError, match=r"Table t column 'id' \(int NOT NULL\) is required but the "
                                                   r"consumer's schema no longer has it"):
        plan_evolution("t", OLD, new)


@pytest.mark.parametrize("url", ["", "/data/warehouse", "hdfs://nn:8020/warehouse", "s3a://bucket/wh",
                                 "file:///tmp/wh", "abfss://c@acct.dfs.core.windows.net/wh", "gs://b/wh"])
def test_warehouse_urls_of_hadoop_filesystems_are_accepted(url):
    assert Settings.from_env({"PIPELINE_ICEBERG_WAREHOUSE": url}).iceberg_warehouse == url


@pytest.mark.parametrize("url", ["s3://bucket/wh", "ftp://host/wh", "relative/dir", "http://x/wh"])
def test_warehouse_url_with_an_unknown_scheme_is_refused_in_one_sentence(url):
    with pytest.raises(SettingsError, match=r"^PIPELINE_ICEBERG_WAREHOUSE=.* is not valid; expected .*s3a://"):
        Settings.from_env({"PIPELINE_ICEBERG_WAREHOUSE": url})


def test_default_warehouse_is_under_the_output_directory(tmp_path):
    settings = Settings.from_env({}, output_dir=tmp_path / "out")
    assert settings.warehouse_url == (tmp_path / "out" / "warehouse").as_uri()


def test_spark_catalog_conf_is_a_jdbc_catalog_with_the_s3a_endpoint(tmp_path):
    settings = Settings.from_env({"PIPELINE_ICEBERG_WAREHOUSE": "s3a://bucket/wh",
                                  "PIPELINE_ICEBERG_S3_ENDPOINT": "http://127.0.0.1:9520"})
    conf = spark_catalog_conf(settings, PostgresTarget("127.0.0.1", 5433, "pipeline", "pipeline", "pw"))
    assert conf["spark.sql.catalog.iceberg"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf["spark.sql.catalog.iceberg.type"] == "jdbc"
    assert conf["spark.sql.catalog.iceberg.uri"] == "jdbc:postgresql://127.0.0.1:5433/pipeline"
    assert conf["spark.sql.catalog.iceberg.warehouse"] == "s3a://bucket/wh"
    assert conf["spark.sql.catalog.iceberg.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9520"
    assert conf["spark.sql.catalog.iceberg.hadoop.fs.s3a.path.style.access"] == "true"
    local = spark_catalog_conf(Settings.from_env({}), PostgresTarget("h", 1, "d", "u", "p"))
    assert not any("s3a" in k for k in local)
