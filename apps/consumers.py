"""The shipped consumers: the ``metrics`` and ``workorder`` topics to Parquet, Iceberg or the console.

``python cmd/consume_cmd.py parquet`` writes ``<output_dir>/metrics/`` and
``<output_dir>/workorder/`` (plus ``*_quarantine/`` for records that do not fit) on a
local or shared POSIX path; ``python cmd/consume_cmd.py iceberg`` writes the Iceberg
tables ``iceberg.pipeline.metrics`` and ``iceberg.pipeline.workorder`` (warehouse: a
local path, ``hdfs://`` or ``s3a://``, see docs/iceberg.md);
``python cmd/consume_cmd.py console`` prints the same records.
"""
from __future__ import annotations

from pyspark.sql.types import (DoubleType, IntegerType, StructField, StructType, TimestampType)

from framework.consumer.base import ConsumerSparkABC
from framework.sinks import ConsoleWriter, ParquetWriter
from framework.sinks.iceberg import IcebergWriter

#: {"id": 3, "time": "2026-01-05T08:00:00.000Z", "val": 17.5}
METRICS_SCHEMA = StructType([
    StructField("id", IntegerType(), nullable=False),
    StructField("time", TimestampType()),
    StructField("val", DoubleType()),
])

#: {"time": "2026-01-05T08:00:00.000Z", "product": 12, "production": 250.0}
WORKORDER_SCHEMA = StructType([
    StructField("time", TimestampType()),
    StructField("product", IntegerType(), nullable=False),
    StructField("production", DoubleType()),
])

SCHEMAS = {"metrics": METRICS_SCHEMA, "workorder": WORKORDER_SCHEMA}


class ParquetConsumer(ConsumerSparkABC):
    """Both topics to Parquet tables, exactly once."""

    name = "parquet"
    topics = ["metrics", "workorder"]
    schema = SCHEMAS
    writer = ParquetWriter()


class IcebergConsumer(ConsumerSparkABC):
    """Both topics to Iceberg tables ``iceberg.<namespace>.metrics`` / ``workorder`` (any warehouse URL).

    Exactly once (see :class:`~framework.sinks.iceberg.IcebergWriter`).
    """

    name = "iceberg"
    topics = ["metrics", "workorder"]
    schema = SCHEMAS
    writer = IcebergWriter()


class ConsoleConsumer(ConsumerSparkABC):
    """Both topics printed to stdout (debugging)."""

    name = "console"
    topics = ["metrics", "workorder"]
    schema = SCHEMAS
    writer = ConsoleWriter()
