"""Deterministic partition choice: the same record always lands in the same partition.

The producer passes ``partition=`` explicitly on every send instead of letting
the client pick, so a record's *destination* (topic, partition) is a pure
function of the record and of the partition count. That is what makes the
exactly-once resume of :mod:`framework.producer.resume` possible.

- keyed records: ``murmur2(key) & 0x7fffffff % n``, bit for bit what the Java
  client's and kafka-python's default partitioner compute, so consumers that
  rely on "same key, same partition" see the usual behaviour;
- keyless records: ``position % n``, a round robin over the source positions.

Minimal use::

    partition_for_key(b"42", 3)        # same answer as kafka-python's DefaultPartitioner
    partition_for_position(7, 3)       # 1
"""
from __future__ import annotations

from functools import lru_cache

from kafka.partitioner.default import murmur2

__all__ = ["murmur2", "partition_for_key", "partition_for_position", "Partitioner"]


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the Java/kafka-python default partitioner gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for_position(position: int, partitions: int) -> int:
    """The partition of a keyless record at source ``position``: round robin over positions."""
    return position % partitions


class Partitioner:
    """Partition choice for one topic with a fixed partition count, with a per-key cache.

    murmur2 is pure Python; a stream usually repeats a small set of keys, so
    the answer is cached per key (bounded, least recently used).
    """

    def __init__(self, partitions: int, cache_size: int = 65536) -> None:
        if partitions < 1:
            raise ValueError(f"A topic has at least 1 partition, not {partitions}.")
        self.partitions = partitions
        self._for_key = lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, key: bytes) -> int:
        return partition_for_key(key, self.partitions)

    def __call__(self, key: bytes | None, position: int) -> int:
        """The partition of a record with ``key`` (None for keyless) at source ``position``."""
        if key is None:
            return position % self.partitions
        return self._for_key(key)
