"""Atomic, exactly-once publication of one Parquet file per micro-batch on a local or mounted path.

Exactly-once contract of :class:`BatchPublisher` (used by ``ParquetWriter`` and
by the default quarantine): Spark records a micro-batch's offset range in the
checkpoint's offset log *before* running it and marks it committed *after*
``foreachBatch`` returns; after a crash it replays the uncommitted batch with
the same ``batch_id`` and the same offsets. The publisher writes a batch into a
staging directory *outside* the table, ``<output_dir>/_staging/<table>/`` (a
sibling of the table on the same filesystem, so no reader of the table directory,
``read_parquet('<table>/**/*.parquet')`` included, ever sees a half-written
file), merges Spark's part files into one Parquet file, then
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

import contextlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from framework.errors import ConsumerError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

STAGING = "_staging"
MARKER = "_pipeline_table.json"
_BATCH_FILE = re.compile(r"^batch-(\d{12})\.parquet$")


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

    @property
    def staging(self) -> Path:
        """Where attempts are written before the rename: ``<parent>/_staging/<table>``, outside the table."""
        return staging_directory(self.directory)

    def clean_staging(self) -> None:
        """Remove what crashed attempts left in the staging directory (call only while nobody publishes here)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()  # the shared ``_staging`` only when no other table stages there

    def publish(self, df: "DataFrame", batch_id: int, planned_rows: int | None = None) -> Path | None:
        """Write ``df`` as the file of ``batch_id``, replacing an earlier attempt; the path, or None if empty.

        A batch known to be small (``planned_rows`` below ``collect_below``) is
        collected to the driver as Arrow and written with pyarrow: one Spark job,
        no output committer, which is what keeps the micro-batches of a
        continuous consumer short (not when a field below the top level is
        ``NOT NULL``: :func:`_required_inside`). Otherwise Spark writes the frame's partitions
        in parallel (one part file per task, nothing funnelled through one task)
        and several non-empty parts are merged into the one published file, row
        group by row group, with pyarrow (bounded memory). Either way the file
        has the Parquet types and Spark schema metadata Spark's own writer gives.
        """
        staging = self.staging / f"batch-{batch_id:012d}-{uuid.uuid4().hex}"
        target = self.path_for(batch_id)
        try:
            if planned_rows is not None and planned_rows < self.collect_below and not _required_inside(df.schema):
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
            self.directory.mkdir(parents=True, exist_ok=True)
            os.replace(single, target)
            _fsync(self.directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):
                staging.parent.rmdir()  # only when no other attempt is staged
        return target


def staging_directory(table: Path) -> Path:
    """The staging directory of the table directory ``table``: ``<table's parent>/_staging/<table name>``.

    Outside the table (readers of ``<table>`` never descend into it), on the same
    filesystem as the table unless ``table`` itself is a mount point, so the
    final ``os.replace`` stays an atomic rename. A crash of an older version left
    its staging at ``<table>/_staging``; :func:`prepare_directory` removes that too.
    """
    table = Path(table)
    return table.parent / STAGING / table.name


def prepare_directory(path: Path, consumer: str, topic: str, fresh_checkpoint: bool) -> None:
    """Create ``path``, clean its staging, claim it for ``consumer``, refuse a silent restart at batch 0."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    facts: dict[str, Any] = {}
    if marker.is_file():
        try:
            facts = json.loads(marker.read_text())
        except (OSError, ValueError):
            facts = {}
        owner = facts.get("consumer")
        if owner and owner != consumer:
            raise ConsumerError(
                f"Table {path} is written by consumer {owner!r}, not {consumer!r}; give this consumer's "
                "writer another table name (ParquetWriter(tables={...})) or another PIPELINE_OUTPUT_DIR.")
    publisher = BatchPublisher(path)
    publisher.clean_staging()
    shutil.rmtree(path / STAGING, ignore_errors=True)  # where staging lived before it moved out of the table
    batches = publisher.published_batches()
    if fresh_checkpoint and batches:
        raise ConsumerError(
            f"Table {path} already holds {len(batches)} published batch(es) but the checkpoint of consumer "
            f"{consumer!r} for topic {topic!r} is new, so batch numbers would restart at 0 and mix old and new "
            f"rows; delete {path} to rebuild it from Kafka, or restore the checkpoint.")
    marker.write_text(json.dumps({**facts, "consumer": consumer, "topic": topic}) + "\n")


def check_table_schema(path: Path, schema: "StructType") -> list[str]:
    """Compare ``schema`` with the one recorded in the table's marker, then record it; the changes applied.

    Same rules as the Iceberg tables (:func:`framework.sinks.evolution.plan_evolution`):
    an added column is fine (readers merge the files' columns: DuckDB
    ``union_by_name``, Spark ``mergeSchema``), a widened type is fine, any other
    change raises :class:`~framework.sinks.evolution.SchemaEvolutionError` before
    anything is written. A table without a recorded schema records this one.
    """
    from pyspark.sql.types import StructType

    from framework.sinks.evolution import plan_evolution

    marker = path / MARKER
    facts = json.loads(marker.read_text()) if marker.is_file() else {}
    changes = []
    if facts.get("schema"):
        old = StructType.fromJson(facts["schema"])
        changes = [c.describe() for c in plan_evolution(str(path), old, schema)]
    facts["schema"] = json.loads(schema.json())
    marker.write_text(json.dumps(facts) + "\n")
    return changes


def _codec(compression: str) -> str:
    """Spark's name of a Parquet codec as pyarrow spells it."""
    return {"uncompressed": "none", "lz4_raw": "lz4"}.get(compression.lower(), compression.lower())


def _required_inside(schema: "StructType") -> bool:
    """True when a field below the top level of ``schema`` is required (``NOT NULL`` in a struct, an array or a map).

    Arrow refuses such a column when a parent struct is null (pyspark's ``toArrow``
    casts to the schema: "nulls in input cannot be viewed as non-nullable"), so those
    batches are written by Spark, whose Parquet writer keeps a required field inside
    an optional group.
    """
    from pyspark.sql.types import ArrayType, MapType, StructType

    def required(dtype: Any) -> bool:
        if isinstance(dtype, StructType):
            return any(not f.nullable or required(f.dataType) for f in dtype.fields)
        if isinstance(dtype, ArrayType):
            return not dtype.containsNull or required(dtype.elementType)
        if isinstance(dtype, MapType):
            return not dtype.valueContainsNull or required(dtype.keyType) or required(dtype.valueType)
        return False

    return any(required(f.dataType) for f in schema.fields)


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

    return int(pq.read_metadata(path).num_rows)


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
