"""Where a producer left off, read back from Kafka itself (no side file, no offsets store).

Every record the producer writes carries two ASCII-decimal headers:

- ``source-position``: the record's position in the source stream;
- ``source-watermark``: a position ``L`` such that, when the record was sent,
  every source position ``<= L`` had been acknowledged by Kafka (or skipped,
  dropped by ``transform``, or dead-lettered and acknowledged).

:func:`read_resume_state` reads the *last* record of every partition of the
topic and of its dead-letter topic (each one a *destination*) and returns a
:class:`ResumeState`: the per-destination high-water position ``p_d`` (-1 for an
empty partition) and the largest watermark seen. Why this is enough for
exactly-once is explained in ``docs/exactly-once.md``.

Minimal use::

    state = read_resume_state(consumer_factory, {"metrics": 3, "metrics.dlq": 1})
    state.start_position                       # where to ask the stream to start
    state.already_written(("metrics", 2), 17)  # True: skip position 17
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from framework.errors import ProducerError

POSITION_HEADER = "source-position"
WATERMARK_HEADER = "source-watermark"

Destination = tuple[str, int]

#: How far back from the end of a partition to look for a record with a position header
#: (the last record normally has one; transaction markers or foreign records may sit after it).
LOOKBACK = (1, 100, 1000)


@dataclass(frozen=True)
class ResumeState:
    """Per-destination high-water positions and the acknowledged watermark."""

    high_water: Mapping[Destination, int] = field(default_factory=dict)
    watermark: int = -1

    @property
    def start_position(self) -> int:
        """First source position that may be missing: ``max(watermark, min p_d) + 1``.

        Every position ``<= min p_d`` is present (each destination holds a gap-free
        prefix), and every position ``<= watermark`` was acknowledged.
        """
        lowest = min(self.high_water.values(), default=-1)
        return max(self.watermark, lowest) + 1

    @property
    def highest(self) -> int:
        """The largest position any destination holds (-1 if all are empty): nothing beyond is in Kafka."""
        return max(self.high_water.values(), default=-1)

    def already_written(self, destination: Destination, position: int) -> bool:
        """True when ``destination`` already holds the record at ``position`` (so it is skipped)."""
        return self.high_water.get(destination, -1) >= position


def header(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` in a kafka-python header list, or None."""
    for key, value in headers or ():
        if key == name:
            return bytes(value)
    return None


def read_resume_state(consumer_factory: Callable[[], Any], destinations: Mapping[str, int],
                      timeout: float = 30.0) -> ResumeState:
    """Read the last positioned record of every partition of ``destinations`` ({topic: partition count}).

    ``consumer_factory()`` returns a kafka-python ``KafkaConsumer`` (or a fake with
    ``assign``, ``beginning_offsets``, ``end_offsets``, ``seek``, ``poll``, ``position``
    and ``close``); it is closed before returning. May block up to ``timeout``
    seconds per look-back step. Raises :class:`ProducerError` when a non-empty
    partition holds no record with a ``source-position`` header near its end
    (someone else writes to the topic: resuming exactly-once is then impossible).
    """
    tails = read_partition_tails(consumer_factory, [(t, p) for t, n in destinations.items() for p in range(n)],
                                 timeout)
    high = {d: position for d, (position, _) in tails.items()}
    watermark = max((mark for _, mark in tails.values()), default=-1)
    return ResumeState(high_water=high, watermark=watermark)


def read_partition_tails(consumer_factory: Callable[[], Any], partitions: Sequence[Destination],
                         timeout: float = 30.0) -> dict[Destination, tuple[int, int]]:
    """``{(topic, partition): (position, watermark)}`` of the last positioned record of each partition.

    ``(-1, -1)`` for an empty partition. The core of :func:`read_resume_state`, for
    producers that own only some partitions of a topic (one writer per partition);
    same contract, same :class:`ProducerError`.
    """
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for topic, p in partitions]
    consumer = consumer_factory()
    try:
        consumer.assign(tps)
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        tails: dict[Destination, tuple[int, int]] = {(tp.topic, tp.partition): (-1, -1) for tp in tps}
        todo = [tp for tp in tps if end[tp] > begin[tp]]
        for lookback in LOOKBACK:
            if not todo:
                break
            found = _read_tails(consumer, {tp: (max(begin[tp], end[tp] - lookback), end[tp]) for tp in todo},
                                timeout)
            for tp, (position, mark) in found.items():
                tails[(tp.topic, tp.partition)] = (position, mark)
            todo = [tp for tp in todo if tp not in found and end[tp] - lookback > begin[tp]]
        if todo:
            tp = todo[0]
            raise ProducerError(
                f"Partition {tp.partition} of topic {tp.topic!r} holds records without a {POSITION_HEADER!r} "
                f"header near its end; another writer uses this topic, so the producer cannot resume exactly "
                f"once. Give the producer a topic of its own.")
        return tails
    finally:
        consumer.close()


def _read_tails(consumer: Any, ranges: Mapping[Any, tuple[int, int]], timeout: float) -> dict[Any, tuple[int, int]]:
    """Read offsets [start, end) of each partition; the last (position, watermark) found in each."""
    for tp, (start, _) in ranges.items():
        consumer.seek(tp, start)
    found: dict[Any, tuple[int, int]] = {}
    remaining = dict(ranges)
    deadline = time.monotonic() + timeout
    while remaining:
        if time.monotonic() > deadline:
            tp = next(iter(remaining))
            raise ProducerError(
                f"Reading the end of partition {tp.partition} of topic {tp.topic!r} took more than {timeout:.0f}s; "
                "the broker does not serve fetches.")
        for tp, records in consumer.poll(timeout_ms=200).items():
            for record in records:
                raw = header(record.headers, POSITION_HEADER)
                if raw is not None and tp in remaining and record.offset < remaining[tp][1]:
                    mark = header(record.headers, WATERMARK_HEADER)
                    found[tp] = (int(raw), int(mark) if mark is not None else -1)
        for tp in list(remaining):
            if consumer.position(tp) >= remaining[tp][1]:
                del remaining[tp]
    return found
