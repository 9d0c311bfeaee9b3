"""Where a consumer's micro-batches go: the ``foreachBatch`` writers.

A consumer hands each micro-batch of one topic to its writer twice at most:
:meth:`ForeachBatchWriter.write_batch` with the valid rows and
:meth:`ForeachBatchWriter.write_quarantine` with the rows that failed parsing
(see :mod:`framework.parsing` for both column sets). Each call is made only
when that frame has at least one row. A *routing* consumer (see
:mod:`framework.routing`) calls ``write_batch`` once per table that has rows in
the batch, with the table name in place of the topic, and ``write_quarantine``
once for the topic.

Shipped writers:

- :class:`ParquetWriter`: one table per topic, ``<output_dir>/<topic>/`` (or one per
  route table, ``<output_dir>/<table>/``), and the topic's quarantine,
  ``<output_dir>/<topic>_quarantine/``, exactly once across restarts for any
  Parquet reader (pyarrow, pandas, DuckDB, Spark). A batch of a routing topic
  publishes one file per table that has rows, all named after the batch id.
- :class:`ConsoleWriter`: prints every batch and every quarantined row (debugging).

Exactly-once contract of :class:`BatchPublisher` (used by ``ParquetWriter`` and
by the default quarantine): Spark records a micro-batch's offset range in the
checkpoint's offset log *before* running it and marks it committed *after*
``foreachBatch`` returns; after a crash it replays the uncommitted batch with
the same ``batch_id`` and the same offsets. The publisher writes a batch into a
hidden staging directory (``_staging/``, ignored by readers since its name
starts with ``_``), merges Spark's part files into one Parquet file, then
renames it to the deterministic name ``batch-<batch_id, 12 digits>.parquet``. A rename on one filesystem is
atomic and replaces a file left by a crashed attempt of the same batch, so
readers see either no file or the complete batch, and a replay overwrites
instead of duplicating. ``output_dir`` must therefore be a local (or mounted,
shared) filesystem path that the driver can rename in, and one table belongs to
one consumer (checked with a ``_pipeline_table.json`` marker). A new checkpoint
over a table that already holds batches is refused, because batch numbers
would restart at 0 and mix old and new files.
"""
from __future__ import annotations

import abc
import contextlib
import copy
import json
import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterator, Mapping, Sequence

from framework.errors import ConsumerError
from framework.log import get_logger

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from framework.settings import Settings

log = get_logger("writer")
_BATCH = threading.local()  # what the consumer knows about the batch the current thread writes

STAGING = "_staging"
MARKER = "_pipeline_table.json"
QUARANTINE_SUFFIX = "_quarantine"
_BATCH_FILE = re.compile(r"^batch-(\d{12})\.parquet$")


def planned_rows() -> int | None:
    """Kafka records in the micro-batch the calling thread is writing, when the consumer knows it.

    Set by the consumer around :meth:`ForeachBatchWriter.write_batch` from the
    checkpoint's offset log (see :func:`framework.progress.planned_records`);
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


class BatchPublisher:
    """Publish one DataFrame per ``batch_id`` as ``<directory>/batch-<batch_id>.parquet``, atomically.

    Minimal use (inside a ``foreachBatch`` function)::

        BatchPublisher(Path("output/metrics")).publish(batch_df, batch_id)

    Contract: after :meth:`publish` returns, the file holds exactly the rows of
    ``df``; before, readers see the previous state (nothing, or the complete
    output of an earlier attempt of the same batch). Blocks while Spark writes.
    """

    def __init__(self, directory: Path, compression: str = "snappy", collect_below: int = 0) -> None:
        self.directory = Path(directory)
        self.compression = compression
        self.collect_below = collect_below

    def path_for(self, batch_id: int) -> Path:
        """The published file of ``batch_id``."""
        return self.directory / f"batch-{batch_id:012d}.parquet"

    def published_batches(self) -> list[int]:
        """Batch ids that have a published file, ascending."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for m in map(_BATCH_FILE.match, os.listdir(self.directory)) if m)

    def clean_staging(self) -> None:
        """Remove what crashed attempts left in ``_staging/`` (call only while nobody publishes here)."""
        shutil.rmtree(self.directory / STAGING, ignore_errors=True)

    def publish(self, df: "DataFrame", batch_id: int, planned_rows: int | None = None) -> Path | None:
        """Write ``df`` as the file of ``batch_id``, replacing an earlier attempt; the path, or None if empty.

        A batch known to be small (``planned_rows`` below ``collect_below``) is
        collected to the driver as Arrow and written with pyarrow: one Spark job,
        no output committer, which is what keeps the micro-batches of a
        continuous consumer short. Otherwise Spark writes the frame's partitions
        in parallel (one part file per task, nothing funnelled through one task)
        and several non-empty parts are merged into the one published file, row
        group by row group, with pyarrow (bounded memory). Either way the file
        has the Parquet types and Spark schema metadata Spark's own writer gives.
        """
        staging = self.directory / STAGING / f"batch-{batch_id:012d}-{uuid.uuid4().hex}"
        target = self.path_for(batch_id)
        try:
            if planned_rows is not None and planned_rows < self.collect_below:
                single = _write_collected(df, staging / "collected.parquet", self.compression)
            else:
                df.write.mode("overwrite").option("compression", self.compression).parquet(str(staging))
                parts = [p for p in sorted(staging.glob("part-*.parquet")) if _row_count(p)]
                single = (None if not parts else parts[0] if len(parts) == 1
                          else _merge(parts, staging / "merged.parquet", self.compression))
            if single is None:
                target.unlink(missing_ok=True)  # an empty batch: a replay must not keep an older attempt
                return None
            _fsync(single)
            os.replace(single, target)
            _fsync(self.directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()  # only when no other attempt is staged
        return target


class ForeachBatchWriter(abc.ABC):
    """Base of the writers: receives each micro-batch of each topic, on the driver.

    A consumer declares an *instance* (``writer = ParquetWriter()``); the
    consumer works on a bound copy (:meth:`bind`), so one declaration serves
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

    def bind(self, settings: "Settings", consumer_name: str) -> "ForeachBatchWriter":
        """A copy of this writer that knows the settings and the consumer it writes for."""
        bound = copy.copy(self)
        bound._settings = settings
        bound.consumer_name = consumer_name
        return bound

    @property
    def settings(self) -> "Settings":
        if self._settings is None:
            raise ConsumerError(f"{type(self).__name__} is not bound to a consumer yet; "
                                "the consumer calls bind(settings, name) before writing.")
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

    def prepare(self, topic: str, fresh_checkpoint: bool) -> None:
        """Before the topic's query starts: prepare its quarantine (:meth:`prepare_quarantine`)."""
        self.prepare_quarantine(topic, fresh_checkpoint)

    def prepare_quarantine(self, topic: str, fresh_checkpoint: bool) -> None:
        """Clean the quarantine's staging, check it belongs to us."""
        path = self.quarantine_path(topic)
        if path is not None:
            _prepare_directory(path, self.consumer_name, topic, fresh_checkpoint)

    def prepare_routes(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        """Instead of :meth:`prepare`, before the query of a routing consumer's topic starts.

        ``tables`` are the route tables the topic's rows are written to. Default:
        prepare the topic's quarantine only.
        """
        self.prepare_quarantine(topic, fresh_checkpoint)

    @abc.abstractmethod
    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        """Write the valid rows of one micro-batch of ``topic``."""

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        """Write the quarantined rows of one micro-batch (Parquet, exactly once, by default)."""
        path = self.quarantine_path(topic)
        if path is not None:
            BatchPublisher(path).publish(df, batch_id)


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
        _prepare_directory(self.output_path(topic), self.consumer_name, topic, fresh_checkpoint)
        super().prepare(topic, fresh_checkpoint)

    def prepare_routes(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        for table in tables:
            _prepare_directory(self.output_path(table), self.consumer_name, topic, fresh_checkpoint)
        super().prepare_routes(topic, tables, fresh_checkpoint)

    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self.publisher(self.output_path(topic)).publish(df, batch_id, planned_rows())

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self.publisher(self.quarantine_path(topic)).publish(df, batch_id, planned_rows())


class ConsoleWriter(ForeachBatchWriter):
    """Print each micro-batch (``rows`` rows at most) and every quarantined row with its reason.

    For debugging: nothing is written to disk except the checkpoint, so a second
    run starts where the first stopped.
    """

    def __init__(self, rows: int = 20, truncate: bool = False) -> None:
        self.rows = rows
        self.truncate = truncate

    def describe(self) -> str:
        return f"ConsoleWriter(stdout, {self.rows} rows per batch)"

    def quarantine_path(self, topic: str) -> Path | None:
        return None

    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        print(f"=== {topic}: batch {batch_id} ===", flush=True)
        df.show(self.rows, truncate=self.truncate)

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        print(f"=== {topic}: batch {batch_id}, quarantined ===", flush=True)
        df.select("kafka_partition", "kafka_offset", "reason", "raw_value").show(self.rows, truncate=self.truncate)


def _prepare_directory(path: Path, consumer: str, topic: str, fresh_checkpoint: bool) -> None:
    """Create ``path``, clean its staging, claim it for ``consumer``, refuse a silent restart at batch 0."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if marker.is_file():
        try:
            owner = json.loads(marker.read_text()).get("consumer")
        except (OSError, ValueError):
            owner = None
        if owner and owner != consumer:
            raise ConsumerError(
                f"Table {path} is written by consumer {owner!r}, not {consumer!r}; give this consumer's "
                "writer another table name (ParquetWriter(tables={...})) or another PIPELINE_OUTPUT_DIR.")
    publisher = BatchPublisher(path)
    publisher.clean_staging()
    batches = publisher.published_batches()
    if fresh_checkpoint and batches:
        raise ConsumerError(
            f"Table {path} already holds {len(batches)} published batch(es) but the checkpoint of consumer "
            f"{consumer!r} for topic {topic!r} is new, so batch numbers would restart at 0 and mix old and new "
            f"rows; delete {path} to rebuild it from Kafka, or restore the checkpoint.")
    marker.write_text(json.dumps({"consumer": consumer, "topic": topic}) + "\n")


def _codec(compression: str) -> str:
    """Spark's name of a Parquet codec as pyarrow spells it."""
    return {"uncompressed": "none", "lz4_raw": "lz4"}.get(compression.lower(), compression.lower())


def _write_collected(df: "DataFrame", target: Path, compression: str) -> Path | None:
    """Collect ``df`` as Arrow and write it to ``target`` as Spark would; None when it has no rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df.toArrow()
    if table.num_rows == 0:
        return None
    # timestamps: UTC instants like Spark's files (Arrow carries the session time zone instead)
    fields = [f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz
              else f for f in table.schema]
    spark = df.sparkSession
    metadata = {b"org.apache.spark.version": spark.version.encode(),
                b"org.apache.spark.sql.parquet.row.metadata": df.schema.json().encode()}
    table = table.cast(pa.schema(fields)).replace_schema_metadata(metadata)
    unit = (spark.conf.get("spark.sql.parquet.outputTimestampType", "INT96") or "INT96").upper()
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression=_codec(compression),
                   use_deprecated_int96_timestamps=unit == "INT96",
                   coerce_timestamps="ms" if unit == "TIMESTAMP_MILLIS" else None)
    return target


def _merge(parts: Sequence[Path], target: Path, compression: str) -> Path:
    """Concatenate Parquet files of one schema into ``target``, one row group at a time."""
    import pyarrow.parquet as pq

    codec = _codec(compression)
    writer = None
    try:
        for part in parts:
            source = pq.ParquetFile(part)
            if writer is None:
                int96 = any(source.schema.column(i).physical_type == "INT96" for i in range(len(source.schema)))
                writer = pq.ParquetWriter(target, source.schema_arrow, compression=codec,
                                          use_deprecated_int96_timestamps=int96)  # timestamps as Spark wrote them
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group))
    finally:
        if writer is not None:
            writer.close()
    return target


def _row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk, so a rename survives a machine crash too."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
