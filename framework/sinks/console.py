"""Print micro-batches to standard output, for debugging: :class:`ConsoleWriter`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from framework.sinks.base import ForeachBatchWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


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

