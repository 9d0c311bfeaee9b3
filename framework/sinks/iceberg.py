"""Apache Iceberg tables in a catalog, one commit per micro-batch, exactly once: :class:`IcebergWriter`.

Each micro-batch of a topic (or of each route table) is appended to
``<catalog>.<namespace>.<table>`` by Spark's executors in **one Iceberg commit**
(``DataFrameWriterV2.append``: every task writes its own data files, the driver
commits their list; nothing is merged or renamed on the driver, so the warehouse
may be any Hadoop filesystem: a local path, ``hdfs://``, ``s3a://``). The
quarantine of a topic goes to ``<table>_quarantine`` under the same rule.

Exactly once: the commit carries ``pipeline.consumer``, ``pipeline.source`` (the
topic or route table) and ``pipeline.batch-id`` in its snapshot summary
(Spark write option ``snapshot-property.<key>``), atomically with the data. Spark
records a batch's offsets before running it and marks it committed after
``foreachBatch`` returns, so after a crash between Iceberg's commit and Spark's
commit log the batch is replayed with the same id; before writing, the writer
walks the table's snapshots from the newest to the last one this consumer wrote
for that source and skips a batch whose id is not newer. A crash *inside* a
batch leaves no commit (Iceberg's commit is one atomic swap of the metadata
pointer in the catalog), so the replay writes it. Files of an attempt that
never committed are orphans that ``tables expire`` removes.

Tables are created on the consumer's start from the schema of the rows it
writes (NOT NULL kept; record fields then the ``kafka_*`` metadata), and evolved
by :mod:`framework.sinks.evolution` before the first batch. Catalog and
warehouse: :mod:`framework.sinks.iceberg_catalog`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from framework.errors import ConsumerError
from framework.log import get_logger
from framework.sinks.base import QUARANTINE_SUFFIX, ForeachBatchWriter
from framework.sinks.evolution import plan_evolution
from framework.sinks.iceberg_catalog import (TABLE_PROPERTIES, ensure_catalog_database, iceberg_table_name, qualified,
                                             spark_catalog_conf)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = get_logger("iceberg")

KEY_CONSUMER = "pipeline.consumer"
KEY_SOURCE = "pipeline.source"
KEY_BATCH = "pipeline.batch-id"
#: table property naming the consumer that owns (writes) the table
OWNER_PROPERTY = "pipeline.consumer"
#: set to a number N to SIGKILL the process right after the Iceberg commit of batch N (kill tests only)
KILL_AFTER_COMMIT_ENV = "FRAMEWORK_TEST_KILL_AFTER_ICEBERG_COMMIT"


class IcebergWriter(ForeachBatchWriter):
    """Iceberg tables ``<catalog>.<namespace>.<table>``, one commit per micro-batch, exactly once.

    ``tables`` maps a topic (or route table) to another table name (default: the
    topic, with characters other than letters, digits and ``_`` as ``_``);
    ``compact_every`` rewrites the table's small data files every N batches
    (default ``PIPELINE_ICEBERG_COMPACT_EVERY``, 0 = never). Read a table with
    ``python cmd/query_cmd.py "SELECT count(*) FROM metrics"`` or, in Spark,
    ``spark.table("iceberg.pipeline.metrics")``.

    Minimal use::

        class Metrics(ConsumerSparkABC):
            name, topics, schema = "metrics-iceberg", ["metrics"], "id INT NOT NULL, val DOUBLE"
            writer = IcebergWriter()
    """

    writes_every_row = True

    def __init__(self, tables: Mapping[str, str] | None = None, compact_every: int | None = None) -> None:
        self.tables = dict(tables or {})
        self.compact_every = compact_every
        self._catalog_conf: dict[str, str] | None = None

    def _bind(self, settings: Any, consumer_name: str) -> "IcebergWriter":
        bound = super()._bind(settings, consumer_name)
        assert isinstance(bound, IcebergWriter)
        bound._catalog_conf = None
        return bound

    # ------------------------------------------------------------------ facts
    @property
    def spark_conf(self) -> Mapping[str, str]:  # type: ignore[override]
        """Spark SQL settings of the catalog; the first call makes sure the catalog's database answers."""
        conf = dict(ForeachBatchWriter.spark_conf)
        if self._settings is None:
            return conf
        if self._catalog_conf is None:
            self._catalog_conf = spark_catalog_conf(self.settings, ensure_catalog_database(self.settings))
        conf.update(self._catalog_conf)
        return conf

    def describe(self) -> str:
        if self._settings is None:
            return "IcebergWriter(<catalog>.<namespace>.<table>, one commit per batch, exactly once)"
        s = self._settings
        return f"IcebergWriter({s.iceberg_catalog}.{s.iceberg_namespace}.<table> in {s.warehouse_url}, exactly once)"

    def table_name(self, topic: str) -> str:
        return iceberg_table_name(self.tables.get(topic, topic))

    def qualified_name(self, topic: str) -> str:
        """``<catalog>.<namespace>.<table>`` of a topic (or route table)."""
        return qualified(self.settings, self.table_name(topic))

    def quarantine_name(self, topic: str) -> str:
        return qualified(self.settings, self.table_name(topic) + QUARANTINE_SUFFIX)

    def quarantine_path(self, topic: str) -> None:
        return None  # a table in the catalog, not a path

    def prepare(self, topic: str, fresh_checkpoint: bool) -> None:
        """Nothing on a path: the tables are prepared in :meth:`prepare_tables`."""

    def prepare_routes(self, topic: str, tables: Any, fresh_checkpoint: bool) -> None:
        """Nothing on a path: the tables are prepared in :meth:`prepare_tables`."""

    # ------------------------------------------------------------------ start
    def prepare_tables(self, spark: "SparkSession", schemas: Mapping[str, "StructType"],
                       quarantines: Mapping[str, "StructType"], fresh_checkpoint: bool) -> None:
        """Create or evolve every table (and quarantine table) before the query starts.

        Refuses (:class:`ConsumerError`, one sentence) a table owned by another
        consumer, a schema change the table cannot follow, and a new checkpoint
        over a table this consumer already wrote (batch ids would restart at 0).
        """
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.settings.iceberg_catalog}.{self.settings.iceberg_namespace}")
        targets = [(source, self.qualified_name(source), schema) for source, schema in schemas.items()]
        targets += [(source, self.quarantine_name(source), schema) for source, schema in quarantines.items()]
        for source, name, schema in targets:
            self._prepare_table(spark, name, schema)
            if fresh_checkpoint:
                done = last_committed_batch(spark, name, self.consumer_name, source)
                if done is not None:
                    raise ConsumerError(
                        f"Table {name} already holds batches up to {done} of consumer {self.consumer_name!r} "
                        f"but its checkpoint for {source!r} is new, so batch ids would restart at 0 and new rows "
                        f"would be skipped; drop the table (`python cmd/tables_cmd.py drop {name}`) to rebuild "
                        "it from Kafka, or restore the checkpoint.")

    def _prepare_table(self, spark: "SparkSession", name: str, schema: "StructType") -> None:
        if not spark.catalog.tableExists(name):
            columns = ", ".join(_column_ddl(f) for f in schema.fields)
            props = {**TABLE_PROPERTIES, OWNER_PROPERTY: self.consumer_name}
            properties = ", ".join(f"'{k}'='{v}'" for k, v in props.items())
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({columns}) USING iceberg TBLPROPERTIES ({properties})")
            log.info("Created Iceberg table {} ({} columns)", name, len(schema.fields))
            return
        owner = table_property(spark, name, OWNER_PROPERTY)
        if owner and owner != self.consumer_name:
            raise ConsumerError(
                f"Table {name} is written by consumer {owner!r}, not {self.consumer_name!r}; give this consumer's "
                "writer another table name (IcebergWriter(tables={...})) or another PIPELINE_ICEBERG_NAMESPACE.")
        current = spark.table(name).schema
        for change in plan_evolution(name, current, schema):
            spark.sql(change.sql(name))
            log.info("Table {}: {}", name, change.describe())

    # ------------------------------------------------------------------ batches
    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self._append(df, batch_id, topic, self.qualified_name(topic))

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self._append(df, batch_id, topic, self.quarantine_name(topic))

    def _append(self, df: "DataFrame", batch_id: int, source: str, name: str) -> None:
        spark = df.sparkSession
        done = last_committed_batch(spark, name, self.consumer_name, source)
        if done is not None and done >= batch_id:
            log.info("Batch {} of {} is already committed to {} (snapshot summary); skipped", batch_id, source, name)
            df.write.format("noop").mode("overwrite").save()  # the consumer's row counts still see the batch
            return
        (align(df, spark.table(name).schema).writeTo(name)
         .option(f"snapshot-property.{KEY_CONSUMER}", self.consumer_name)
         .option(f"snapshot-property.{KEY_SOURCE}", source)
         .option(f"snapshot-property.{KEY_BATCH}", str(batch_id))
         .append())
        _maybe_kill(batch_id)
        every = self.settings.iceberg_compact_every if self.compact_every is None else self.compact_every
        if every and (batch_id + 1) % every == 0:
            compact(spark, name)


def last_committed_batch(spark: "SparkSession", name: str, consumer: str, source: str) -> int | None:
    """The batch id in the newest snapshot of ``name`` written by ``consumer`` for ``source``; None if none.

    Walks the snapshot chain from the current snapshot backwards through its
    parents (Iceberg's Java API through the session's catalog, a few ms).
    """
    table = iceberg_table(spark, name)
    table.refresh()
    snapshot = table.currentSnapshot()
    while snapshot is not None:
        summary = snapshot.summary()
        if summary.get(KEY_CONSUMER) == consumer and summary.get(KEY_SOURCE) == source:
            return int(summary.get(KEY_BATCH))
        parent = snapshot.parentId()
        snapshot = table.snapshot(parent) if parent is not None else None
    return None


def iceberg_table(spark: "SparkSession", name: str) -> Any:
    """Iceberg's Java ``Table`` of a qualified name, through the session's catalog (py4j)."""
    jvm: Any = spark.sparkContext._jvm
    return jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)


def table_property(spark: "SparkSession", name: str, key: str) -> str | None:
    value = iceberg_table(spark, name).properties().get(key)
    return None if value is None else str(value)


def compact(spark: "SparkSession", name: str, min_input_files: int = 2) -> dict[str, int]:
    """Rewrite the small data files of ``name`` into larger ones (Iceberg's ``rewrite_data_files``).

    Returns ``{"rewritten": files replaced, "added": files written}``; the rows are unchanged.
    """
    catalog, table = name.split(".", 1)
    row = spark.sql(f"CALL {catalog}.system.rewrite_data_files(table => '{table}', "
                    f"options => map('min-input-files', '{min_input_files}'))").collect()[0]
    result = {"rewritten": int(row["rewritten_data_files_count"]), "added": int(row["added_data_files_count"])}
    log.info("Compacted {}: {} data files rewritten into {}", name, result["rewritten"], result["added"])
    return result


def align(df: "DataFrame", schema: "StructType") -> "DataFrame":
    """``df`` with the table's columns in the table's order: a column the frame lacks is null of its type."""
    from pyspark.sql import functions as F

    present = {c.lower(): c for c in df.columns}
    return df.select(*[F.col(present[f.name.lower()]).cast(f.dataType).alias(f.name) if f.name.lower() in present
                       else F.lit(None).cast(f.dataType).alias(f.name) for f in schema.fields])


def _column_ddl(field: Any) -> str:
    name = "`" + field.name.replace("`", "``") + "`"
    return f"{name} {field.dataType.simpleString()}{'' if field.nullable else ' NOT NULL'}"


def _maybe_kill(batch_id: int) -> None:
    """Kill tests: SIGKILL this process right after the commit of the batch named by the environment."""
    import os
    import signal

    wanted = os.environ.get(KILL_AFTER_COMMIT_ENV)
    if wanted is not None and wanted.strip() == str(batch_id):
        os.kill(os.getpid(), signal.SIGKILL)
