"""The base of every sink: :class:`ForeachBatchWriter`, the consumer's ``foreachBatch`` target.

A consumer hands each micro-batch of one topic to its writer twice at most:
:meth:`ForeachBatchWriter.write_batch` with the valid rows and
:meth:`ForeachBatchWriter.write_quarantine` with the rows that failed parsing
(see :mod:`framework.consumer.parsing` for both column sets). Each call is made only
when that frame has at least one row. A *routing* consumer (see
:mod:`framework.consumer.routing`) calls ``write_batch`` once per table that has rows in
the batch, with the table name in place of the topic, and ``write_quarantine``
once for the topic.

Shipped sinks: :class:`framework.sinks.parquet.ParquetWriter` and
:class:`framework.sinks.console.ConsoleWriter`. The default quarantine is
written with :class:`framework.sinks.publish.BatchPublisher` (exactly once,
Parquet); this module imports no concrete sink.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Sequence

from framework.errors import ConsumerError
from framework.sinks.publish import BatchPublisher, prepare_directory

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from framework.settings import Settings

_BATCH = threading.local()  # what the consumer knows about the batch the current thread writes

QUARANTINE_SUFFIX = "_quarantine"


def planned_rows() -> int | None:
    """Kafka records in the micro-batch the calling thread is writing, when the consumer knows it.

    Set by the consumer around :meth:`ForeachBatchWriter.write_batch` from the
    checkpoint's offset log (see :func:`framework.consumer.progress.planned_records`);
    None outside a batch or when unknown.
    """
    return getattr(_BATCH, "rows", None)


@contextlib.contextmanager
def planning(rows: int | None) -> Iterator[None]:
    """Within the block, :func:`planned_rows` returns ``rows`` in this thread."""
    previous = getattr(_BATCH, "rows", None)
    _BATCH.rows = rows
    try:
        yield
    finally:
        _BATCH.rows = previous


class ForeachBatchWriter(abc.ABC):
    """Base of the writers: receives each micro-batch of each topic, on the driver.

    A consumer declares an *instance* (``writer = ParquetWriter()``); the
    consumer works on a bound copy (:meth:`_bind`), so one declaration serves
    every consumer instance. Override :meth:`write_batch`; optionally
    :meth:`write_quarantine` (default: Parquet, exactly once, in
    ``<output_dir>/<table>_quarantine/``), :meth:`prepare` (called once per
    topic before its query starts; :meth:`prepare_routes` instead for a routing
    consumer) and :meth:`output_path`. For a routing consumer the ``topic``
    argument of :meth:`write_batch` and :meth:`output_path` is the route's table.

    Contract: called from Spark's ``foreachBatch`` thread of the topic's query
    (several topics run concurrently, so keep shared state thread-safe); each
    frame is non-empty and cached (but see :attr:`writes_every_row`); an exception fails the query (the batch is
    replayed with the same ``batch_id`` on the next run). To be exactly-once,
    make the output of a ``batch_id`` replace, not add to, an earlier attempt.

    A writer whose :meth:`write_batch` computes every row of its frame in one
    action (a full write, as ``ParquetWriter`` does) sets :attr:`writes_every_row`:
    the consumer then counts the rows while they are written instead of in a
    separate pass over a cached frame, and the valid frame is not cached and may
    be empty (every record of the batch quarantined).

    Minimal working subclass::

        class JsonLinesWriter(ForeachBatchWriter):
            def write_batch(self, df, batch_id, topic):
                df.write.mode("overwrite").json(str(self.settings.output_dir / topic / f"batch={batch_id}"))
    """

    #: runtime SQL settings the consumer applies to its Spark session before starting
    spark_conf: ClassVar[Mapping[str, str]] = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}

    #: True when write_batch computes every row of its frame in one action (enables the one-pass batch)
    writes_every_row: ClassVar[bool] = False

    _settings: "Settings | None" = None
    consumer_name: str = ""

    def _bind(self, settings: "Settings", consumer_name: str) -> "ForeachBatchWriter":
        """A copy of this writer that knows the settings and the consumer it writes for."""
        bound = copy.copy(self)
        bound._settings = settings
        bound.consumer_name = consumer_name
        return bound

    @property
    def settings(self) -> "Settings":
        if self._settings is None:
            raise ConsumerError(f"{type(self).__name__} is not bound to a consumer yet; "
                                "the consumer binds it (to its settings and name) before writing.")
        return self._settings

    def describe(self) -> str:
        """One line for ``consume_cmd.py --list``."""
        return type(self).__name__

    def table_name(self, topic: str) -> str:
        """Name of the table (directory) a topic is written to; the topic itself by default."""
        return topic

    def output_path(self, topic: str) -> Path | None:
        """Where the valid rows of ``topic`` go, if that is a path."""
        return None

    def quarantine_path(self, topic: str) -> Path | None:
        """Where the quarantined rows of ``topic`` go: ``<output_dir>/<table>_quarantine``."""
        return Path(self.settings.output_dir) / f"{self.table_name(topic)}{QUARANTINE_SUFFIX}"

    def declare_schema(self, topic: str, schema: Any) -> None:
        """Before :meth:`prepare`: the consumer's declared ``StructType`` of ``topic`` (or route table).

        Parsed frames lose NOT NULL (Spark's JSON parsing makes every field
        nullable); a writer that creates typed tables reads it back with
        :meth:`declared_schema`.
        """
        self._declared = {**getattr(self, "_declared", {}), topic: schema}

    def declared_schema(self, topic: str) -> Any:
        """The ``StructType`` given to :meth:`declare_schema` for ``topic``, or None."""
        return getattr(self, "_declared", {}).get(topic)

    def prepare(self, topic: str, fresh_checkpoint: bool) -> None:
        """Before the topic's query starts: prepare its quarantine (:meth:`_prepare_quarantine`)."""
        self._prepare_quarantine(topic, fresh_checkpoint)

    def _prepare_quarantine(self, topic: str, fresh_checkpoint: bool) -> None:
        """Clean the quarantine's staging, check it belongs to us."""
        path = self.quarantine_path(topic)
        if path is not None:
            prepare_directory(path, self.consumer_name, topic, fresh_checkpoint)

    def prepare_routes(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        """Instead of :meth:`prepare`, before the query of a routing consumer's topic starts.

        ``tables`` are the route tables the topic's rows are written to. Default:
        prepare the topic's quarantine only.
        """
        self._prepare_quarantine(topic, fresh_checkpoint)

    def prepare_tables(self, spark: "SparkSession", schemas: Mapping[str, "StructType"],  # noqa: B027
                       quarantines: Mapping[str, "StructType"], fresh_checkpoint: bool) -> None:
        """After :meth:`prepare`, before the query starts: the schema of the rows each call will receive.

        ``schemas`` maps each ``topic`` argument of :meth:`write_batch` (the topic,
        or the route tables) to the schema of its rows (after ``transform``);
        ``quarantines`` maps each ``topic`` argument of :meth:`write_quarantine`
        to the quarantine's schema. A writer creates or evolves its tables here, or
        raises to refuse a schema change before anything is written. Default: nothing.
        """

    @abc.abstractmethod
    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        """Write the valid rows of one micro-batch of ``topic``."""

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        """Write the quarantined rows of one micro-batch (Parquet, exactly once, by default)."""
        path = self.quarantine_path(topic)
        if path is not None:
            BatchPublisher(path).publish(df, batch_id)

