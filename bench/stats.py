"""Small statistics used by every benchmark section: percentiles, latency and throughput summaries.

Conventions (the same as Kafka's ``ProducerPerformance``, so figures compare):
``MB`` is 2**20 bytes and counts record *values* only; a latency is the time
from handing a record to the client (``send``) to the client reporting it
acknowledged. Percentiles interpolate linearly between the closest ranks
(numpy's default), so ``percentile([1, 2, 3, 4], 50) == 2.5``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

MB = 1024 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``; NaN when there are none.

    Linear interpolation between closest ranks: rank ``(n - 1) * q / 100``.
    ``values`` need not be sorted.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"A percentile is between 0 and 100, not {q}.")
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    """Median of the finite values; NaN when there are none (a failed repeat is left out)."""
    data = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(data) if data else math.nan


def ratio(ours: float | None, reference: float | None) -> float | None:
    """``ours / reference``, or None when either is missing or the reference is not positive."""
    if ours is None or reference is None or not math.isfinite(ours) or not math.isfinite(reference):
        return None
    if reference <= 0:
        return None
    return ours / reference


@dataclass(frozen=True)
class LatencySummary:
    """Count, mean and percentiles of latencies, in milliseconds."""

    count: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, values: Sequence[float]) -> "LatencySummary":
        """Summarise latencies given in seconds (NaN figures when there are none)."""
        ms = sorted(v * 1000.0 for v in values)
        if not ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(count=len(ms), avg_ms=sum(ms) / len(ms), p50_ms=percentile(ms, 50),
                   p95_ms=percentile(ms, 95), p99_ms=percentile(ms, 99), max_ms=ms[-1])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Throughput:
    """Records and value bytes moved in ``seconds``."""

    records: int
    bytes: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds > 0 else math.nan

    @property
    def avg_record_bytes(self) -> float:
        return self.bytes / self.records if self.records else math.nan

    def to_dict(self) -> dict:
        return {**asdict(self), "records_per_s": self.records_per_s, "mb_per_s": self.mb_per_s}
