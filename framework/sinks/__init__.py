"""Sinks: where a consumer's micro-batches go (``foreachBatch`` writers).

- :class:`ForeachBatchWriter` (:mod:`framework.sinks.base`): the base; override ``write_batch``.
- :class:`ParquetWriter` (:mod:`framework.sinks.parquet`): Parquet tables, exactly once.
- :class:`ConsoleWriter` (:mod:`framework.sinks.console`): prints batches.
- ``JdbcWriter`` / ``PostgresWriter`` (:mod:`framework.sinks.jdbc`, imported from there): PostgreSQL
  tables, exactly once, with streaming aggregates (:mod:`framework.sinks.aggregates`).
"""
from __future__ import annotations

from framework.sinks.base import QUARANTINE_SUFFIX, ForeachBatchWriter, planned_rows, planning
from framework.sinks.console import ConsoleWriter
from framework.sinks.parquet import ParquetWriter
from framework.sinks.publish import MARKER, STAGING, BatchPublisher

__all__ = ["MARKER", "QUARANTINE_SUFFIX", "STAGING", "BatchPublisher", "ConsoleWriter", "ForeachBatchWriter",
           "ParquetWriter", "planned_rows", "planning"]
