"""Synthetic metrics records of a chosen size, and an in-memory NDJSON session that serves them at a rate.

The benchmark must not depend on the shipped data files, so every section
makes its records here. A record looks like the shipped ``metrics`` stream
(so the ``parquet`` consumer's schema reads it)::

    {"id":7,"time":"2026-01-05T06:00:00.006Z","val":123.456}

``id`` cycles over ``keys`` machine parameters (the Kafka key of the metrics
producer), ``time`` advances by ``step_ms`` per record, ``val`` is pseudo-random
(``random.Random(seed)``: the same options give the same bytes). With ``size``
set, a ``"pad"`` member makes every record exactly ``size`` bytes of compact
JSON; without it a record is 53 to 57 bytes (the shipped records average 56).

:class:`MemoryNdjsonSession` is a ``requests``-like session for
:class:`~framework.producer.base.ProducerABC` (``session=``) that serves such lines
from memory with the API's wire format (``{"_position":N,...}``), honours
``from`` and, with ``rate``, paces them like the API does at ``delay=1/rate``.

Minimal use::

    records = SyntheticRecords(size=200)
    session = MemoryNdjsonSession(records.wire_lines(100_000), rate=5_000)
    MyProducer(settings, session=session).run()
"""
from __future__ import annotations

import math
import random
import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import orjson

from bench.errors import BenchError

MIDNIGHT = datetime(2026, 1, 5, tzinfo=timezone.utc)
START_MS = 6 * 3_600_000  # the first record is at 2026-01-05T06:00:00.000Z, like the shipped data
PAD_OVERHEAD = len(b',"pad":""')
#: the largest unpadded record (two-digit id, seven-character value) plus the pad member's overhead
MIN_PADDED_SIZE = 57 + PAD_OVERHEAD
CHUNK_SIZE = 1 << 16
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class SyntheticRecords:
    """Deterministic metrics-shaped records; ``size`` None means natural (53..57 bytes)."""

    size: int | None = None
    keys: int = 24
    step_ms: int = 1
    seed: int = 20260105

    def __post_init__(self) -> None:
        if self.size is not None and self.size < MIN_PADDED_SIZE:
            raise BenchError(f"A record size of {self.size} bytes is below the smallest padded record "
                             f"({MIN_PADDED_SIZE} bytes); use at least {MIN_PADDED_SIZE}, or no size for "
                             "natural records of 53 to 57 bytes.")
        if self.keys < 1:
            raise BenchError(f"Synthetic records need at least 1 key, not {self.keys}.")

    def records(self, count: int) -> Iterator[bytes]:
        """The first ``count`` records as compact JSON (no newline, no ``_position``)."""
        rng = random.Random(self.seed)
        days: dict[int, str] = {}
        for i in range(count):
            day, ms_of_day = divmod(START_MS + i * self.step_ms, _DAY_MS)
            date = days.get(day)
            if date is None:
                date = days[day] = (MIDNIGHT + timedelta(days=day)).strftime("%Y-%m-%dT")
            seconds, millis = divmod(ms_of_day, 1000)
            hours, rest = divmod(seconds, 3600)
            stamp = f"{date}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{millis:03d}Z"
            value = round(rng.uniform(10.0, 200.0), 3)
            body = orjson.dumps({"id": i % self.keys + 1, "time": stamp, "val": value})
            if self.size is not None:
                pad = self.size - len(body) - PAD_OVERHEAD
                body = body[:-1] + b',"pad":"' + b"x" * pad + b'"}'
            yield body

    def wire_lines(self, count: int, start: int = 0) -> list[bytes]:
        """API wire lines ``{"_position":N,...}\\n`` for positions ``start..start+count-1``."""
        return [b'{"_position":%d,%s\n' % (start + i, body[1:]) for i, body in enumerate(self.records(count))]

    def write_jsonl(self, path: Path, count: int) -> float:
        """Write ``count`` records as a JSON Lines file (an API data file); return the average record size."""
        total = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for body in self.records(count):
                total += len(body)
                f.write(body + b"\n")
        return total / count if count else math.nan


def paced_ranges(total: int, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Iterator[tuple[int, int]]:
    """``(low, high)`` index ranges of records due so far, record ``i`` due ``i / rate`` s after the start.

    The first record is due at once; records already due are released together,
    so a slow reader gets larger ranges and the schedule never drifts. ``rate``
    0 (or below) releases everything at once.
    """
    if total <= 0:
        return
    if rate <= 0:
        yield 0, total
        return
    started = clock()
    sent = 0
    while sent < total:
        due = min(total, math.floor((clock() - started) * rate) + 1)
        if due > sent:
            yield sent, due
            sent = due
        else:
            sleep(max(0.0, started + sent / rate - clock()))


class _MemoryResponse:
    """A streamed 200 answer whose body comes from memory."""

    status_code = 200
    text = ""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.closed = False

    def iter_content(self, chunk_size: int | None = None) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self.closed:
                return
            yield chunk

    def close(self) -> None:
        self.closed = True


class MemoryNdjsonSession:
    """A requests-like session serving pre-built wire lines, honouring ``from``, optionally paced.

    ``lines`` are complete wire lines (``\\n``-terminated), position ``i`` at index
    ``i``. Unpaced, the body goes out in :data:`CHUNK_SIZE` chunks (like a socket
    read); paced at ``rate`` records/s, each chunk holds the records due by then.
    ``requests`` keeps the parameters of every GET.
    """

    def __init__(self, lines: Sequence[bytes], rate: float = 0.0, chunk_size: int = CHUNK_SIZE) -> None:
        self.body = b"".join(lines)
        self.offsets = array("q", [0])
        for line in lines:
            self.offsets.append(self.offsets[-1] + len(line))
        self.rate = rate
        self.chunk_size = chunk_size
        self.requests: list[dict] = []

    @property
    def records(self) -> int:
        return len(self.offsets) - 1

    def get(self, url: str, params: dict | None = None, stream: bool = False, timeout: object = None
            ) -> _MemoryResponse:
        params = dict(params or {})
        self.requests.append(params)
        start = min(int(params.get("from", 0)), self.records)
        paced = self.rate > 0 and float(params.get("delay", 1)) != 0  # a resume catch-up asks for delay=0
        return _MemoryResponse(self._paced(start) if paced else self._chunks(start))

    def _chunks(self, start: int) -> Iterator[bytes]:
        body, size = self.body, self.chunk_size
        for low in range(self.offsets[start], len(body), size):
            yield body[low:low + size]

    def _paced(self, start: int) -> Iterator[bytes]:
        for low, high in paced_ranges(self.records - start, self.rate):
            yield self.body[self.offsets[start + low]:self.offsets[start + high]]

    def close(self) -> None:
        pass
