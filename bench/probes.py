"""Instruments for the Spark sections: when batches were published, and where a micro-batch's time goes.

- :class:`TimedParquetWriter`: a :class:`~framework.sinks.ParquetWriter` that
  notes, per batch, when ``write_batch`` was called, when its file was published
  and where (it publishes exactly like ParquetWriter).
- :class:`ProgressCollector`: a ``StreamingQueryListener`` keeping the
  ``durationMs`` phases Spark reports for every micro-batch of every query
  (``latestOffset``, ``queryPlanning``, ``walCommit``, ``addBatch`` = the
  ``foreachBatch`` body, ``commitOffsets``, ``triggerExecution`` = the whole batch).
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import Table, fmt
from framework.sinks import ParquetWriter, planned_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PHASES = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "addBatch", "commitOffsets", "triggerExecution")


@dataclass(frozen=True)
class PublishedBatch:
    batch_id: int
    write_started: float    # time.time() when write_batch was called
    published_at: float     # time.time() right after the file was renamed into the table
    path: Path


class TimedParquetWriter(ParquetWriter):
    """A ParquetWriter that records a :class:`PublishedBatch` per published file.

    The list is shared by the bound copies the consumer makes (they are shallow copies).
    """

    def __init__(self) -> None:
        super().__init__()
        self.published: list[PublishedBatch] = []

    def write_batch(self, df: Any, batch_id: int, topic: str) -> None:
        started = time.time()
        path = self.publisher(self.output_path(topic)).publish(df, batch_id, planned_rows())  # as ParquetWriter
        if path is not None:
            self.published.append(PublishedBatch(batch_id, started, time.time(), path))


class ProgressCollector:
    """Collects ``durationMs`` of every micro-batch progress event, by query name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: dict[str, list[dict[str, Any]]] = {}
        self._listener: Any = None

    def attach(self, spark: "SparkSession") -> "ProgressCollector":
        from pyspark.sql.streaming import StreamingQueryListener

        collector = self

        class _Listener(StreamingQueryListener):
            def onQueryStarted(self, event: Any) -> None:
                pass

            def onQueryProgress(self, event: Any) -> None:
                p = event.progress
                if p.numInputRows:
                    entry = {"batch_id": p.batchId, "rows": p.numInputRows, **dict(p.durationMs)}
                    with collector._lock:
                        collector.batches.setdefault(p.name or "", []).append(entry)

            def onQueryIdle(self, event: Any) -> None:
                pass

            def onQueryTerminated(self, event: Any) -> None:
                pass

        self._listener = _Listener()
        spark.streams.addListener(self._listener)
        return self

    def detach(self, spark: "SparkSession") -> None:
        if self._listener is not None:
            spark.streams.removeListener(self._listener)
            self._listener = None

    def of(self, query_name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.batches.get(query_name, []))


def median_phases(batches: list[dict[str, Any]]) -> dict[str, float]:
    """Median milliseconds of each phase over ``batches`` (phases no batch reported are left out)."""
    out = {}
    for phase in PHASES:
        values = [b[phase] for b in batches if phase in b]
        if values:
            out[phase] = float(statistics.median(values))
    return out


def phase_table(title: str, phases: dict[str, float], batches: int) -> Table:
    """A one-row-per-phase table of Spark's micro-batch durations."""
    total = phases.get("triggerExecution")
    rows = [[name, fmt(ms, "ms"), f"{100 * ms / total:.0f} %" if total else ""] for name, ms in phases.items()]
    return Table(title, ["phase", "median ms", "share of the batch"], rows, "lrr",
                 [f"{batches} micro-batches with data; addBatch is the consumer's foreachBatch body (parse, "
                  "count and publish in one pass), triggerExecution the whole micro-batch."])
