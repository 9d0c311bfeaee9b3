"""Parquet tables on a local or mounted path, exactly once for every reader: :class:`ParquetWriter`.

One table per topic, ``<output_dir>/<topic>/`` (or one per
route table, ``<output_dir>/<table>/``), and the topic's quarantine,
``<output_dir>/<topic>_quarantine/``, exactly once across restarts for any
Parquet reader (pyarrow, pandas, DuckDB, Spark). A batch of a routing topic
publishes one file per table that has rows, all named after the batch id.

The guarantee is :class:`~framework.sinks.publish.BatchPublisher`'s: the
output directory must be a local (or mounted, shared POSIX) filesystem path;
for HDFS or S3 use :class:`~framework.sinks.iceberg.IcebergWriter`. The schema
is checked on start like an Iceberg table's (added and widened columns
allowed, any other change refused, see :mod:`framework.sinks.evolution`), and
recorded in the table's ``_pipeline_table.json``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from framework.sinks.base import ForeachBatchWriter, planned_rows
from framework.log import get_logger
from framework.sinks.publish import BatchPublisher, check_table_schema, prepare_directory

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = get_logger("parquet")

__all__ = ["BatchPublisher", "ParquetWriter"]


class ParquetWriter(ForeachBatchWriter):
    """Parquet tables ``<output_dir>/<table>/batch-<batch_id>.parquet``, exactly once for every reader.

    ``tables`` maps a topic to another table name (default: the topic);
    ``compression`` is any Parquet codec Spark knows (snappy, zstd, gzip, none);
    a micro-batch of fewer than ``collect_below`` Kafka records is collected to
    the driver (as Arrow) and written there, a larger one is written by Spark in
    parallel (see :meth:`BatchPublisher.publish`).
    See the module docstring for the guarantee. Read a table with
    ``pyarrow.parquet.read_table("output/metrics")`` or
    ``spark.read.parquet("output/metrics")``.

    Minimal use::

        class Metrics(ConsumerSparkABC):
            name, topics, schema = "metrics-parquet", ["metrics"], "id INT NOT NULL, val DOUBLE"
            writer = ParquetWriter(compression="zstd")
    """

    writes_every_row = True

    def __init__(self, tables: Mapping[str, str] | None = None, compression: str = "snappy",
                 collect_below: int = 100_000) -> None:
        self.tables = dict(tables or {})
        self.compression = compression
        self.collect_below = collect_below

    def publisher(self, path: Path) -> BatchPublisher:
        """The :class:`BatchPublisher` of a table or quarantine directory, with this writer's options."""
        return BatchPublisher(path, self.compression, self.collect_below)

    def describe(self) -> str:
        where = f"{self._settings.output_dir}/<table>" if self._settings else "<output_dir>/<table>"
        return f"ParquetWriter({where}, {self.compression}, exactly once)"

    def table_name(self, topic: str) -> str:
        return self.tables.get(topic, topic)

    def output_path(self, topic: str) -> Path:
        return Path(self.settings.output_dir) / self.table_name(topic)

    def prepare(self, topic: str, fresh_checkpoint: bool) -> None:
        prepare_directory(self.output_path(topic), self.consumer_name, topic, fresh_checkpoint)
        super().prepare(topic, fresh_checkpoint)

    def prepare_routes(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        for table in tables:
            prepare_directory(self.output_path(table), self.consumer_name, topic, fresh_checkpoint)
        super().prepare_routes(topic, tables, fresh_checkpoint)

    def prepare_tables(self, spark: "SparkSession", schemas: Mapping[str, "StructType"],
                       quarantines: Mapping[str, "StructType"], fresh_checkpoint: bool) -> None:
        """Refuse a schema change the table's files cannot follow (see :func:`check_table_schema`)."""
        for topic, schema in schemas.items():
            for change in check_table_schema(self.output_path(topic), schema):
                log.info("Table {}: {}", self.output_path(topic), change)

    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self.publisher(self.output_path(topic)).publish(df, batch_id, planned_rows())

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        path = self.quarantine_path(topic)
        assert path is not None  # a ParquetWriter always has a quarantine table
        self.publisher(path).publish(df, batch_id, planned_rows())

