"""ParquetWriter's start-time schema check (marker file), without Spark running."""
from __future__ import annotations

import json

import pytest
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from framework.settings import Settings
from framework.sinks import ParquetWriter
from framework.sinks.evolution import SchemaEvolutionError
from framework.sinks.publish import MARKER, prepare_directory


def test_parquet_table_records_its_schema_and_refuses_a_type_change(tmp_path):
    writer = ParquetWriter()._bind(Settings.from_env({}, output_dir=tmp_path), "c")
    v1 = StructType([StructField("id", IntegerType(), False), StructField("val", DoubleType())])
    prepare_directory(writer.output_path("m"), "c", "m", fresh_checkpoint=True)
    writer.prepare_tables(None, {"m": v1}, {}, True)
    marker = json.loads((tmp_path / "m" / MARKER).read_text())
    assert marker["consumer"] == "c" and StructType.fromJson(marker["schema"]) == v1
    prepare_directory(writer.output_path("m"), "c", "m", fresh_checkpoint=False)  # keeps the schema
    assert "schema" in json.loads((tmp_path / "m" / MARKER).read_text())

    v2 = StructType([StructField("id", LongType(), False), StructField("val", DoubleType()),
                     StructField("extra", StringType())])
    writer.prepare_tables(None, {"m": v2}, {}, False)  # widened + added: accepted and recorded
    assert StructType.fromJson(json.loads((tmp_path / "m" / MARKER).read_text())["schema"]) == v2
    v3 = StructType([StructField("id", LongType(), False), StructField("val", StringType())])
    with pytest.raises(SchemaEvolutionError, match=r"column 'val' is double but the consumer's schema now says "
                                                   r"string"):
        writer.prepare_tables(None, {"m": v3}, {}, False)
    assert StructType.fromJson(json.loads((tmp_path / "m" / MARKER).read_text())["schema"]) == v2
