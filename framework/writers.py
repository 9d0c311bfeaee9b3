"""Former home of the writers, kept so ``from framework.writers import ParquetWriter`` still works.

New code imports from :mod:`framework.sinks`.
"""
from __future__ import annotations

from framework.sinks import (MARKER, QUARANTINE_SUFFIX, STAGING, BatchPublisher, ConsoleWriter,
                             ForeachBatchWriter, ParquetWriter, planned_rows, planning)

__all__ = ["MARKER", "QUARANTINE_SUFFIX", "STAGING", "BatchPublisher", "ConsoleWriter", "ForeachBatchWriter",
           "ParquetWriter", "planned_rows", "planning"]
