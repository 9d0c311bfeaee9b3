"""Producer clients the benchmark puts behind :class:`~framework.producer.base.ProducerABC` (``producer_factory=``).

- :class:`TimedProducer` wraps any KafkaProducer-like client and records, per
  record, the time from ``send`` to the acknowledgement (the latency Kafka's
  ``ProducerPerformance`` reports) and the value bytes;
- :func:`framework_producer` builds the kafka-python client exactly as the
  framework does (acks=all, idempotent, ``PIPELINE_PRODUCER_*``), plus overrides;
- :class:`NullProducer` acknowledges at once without any I/O: what is left is
  the framework's own cost per record;
- :class:`~framework.producer.confluent.ConfluentProducer` (re-exported here)
  is the framework's librdkafka client (``PIPELINE_PRODUCER_CLIENT=confluent``);
  ``framework_producer(..., client="confluent")`` builds it as ProducerABC does.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from kafka.future import Future

from bench.stats import LatencySummary, Throughput
from framework.producer.confluent import ConfluentDeliveryError, ConfluentProducer, confluent_available
from framework.settings import Settings

__all__ = ["ConfluentDeliveryError", "ConfluentProducer", "NullProducer", "TimedProducer", "confluent_available",
           "framework_producer"]


class TimedProducer:
    """Forwards to ``inner``; records value bytes, the send window and sampled send-to-ack latencies.

    Every ``sample``-th record (the first included) is timed from ``send`` to its
    acknowledgement; timing each one would cost more than some clients' whole
    send. The window runs from the first ``send`` to the return of the last
    ``flush`` (ProducerABC flushes at the end, which waits for every
    acknowledgement). Other attributes are forwarded (ProducerABC's halt reaches
    the client's ``_sender``, or the confluent client's ``halt``). The latency
    callback runs where the client runs callbacks (kafka-python: its I/O thread;
    librdkafka: inside poll/flush on the sending thread, so its latencies include
    the wait for the next poll, at most ``poll_interval``).
    """

    def __init__(self, inner: Any, sample: int = 8) -> None:
        self.inner = inner
        self.sample = max(1, sample)
        self.latencies: list[float] = []
        self.sent = 0
        self.value_bytes = 0
        self.first_send: float | None = None
        self.flushed_at: float | None = None
        self.wall_offset = time.time() - time.perf_counter()  # perf_counter -> wall clock (between processes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list | None = None, partition: int | None = None, timestamp_ms: int | None = None) -> Any:
        count = self.sent
        self.sent = count + 1
        if value is not None:
            self.value_bytes += len(value)
        if count % self.sample:  # positional: kafka-python's and ConfluentProducer's order (the timer's own cost)
            return self.inner.send(topic, value, key, headers, partition, timestamp_ms)
        started = time.perf_counter()
        if self.first_send is None:
            self.first_send = started
        future = self.inner.send(topic, value, key, headers, partition, timestamp_ms)
        latencies = self.latencies
        future.add_callback(lambda _metadata: latencies.append(time.perf_counter() - started))
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.inner.flush(timeout=timeout)
        self.flushed_at = time.perf_counter()

    def close(self, timeout: float | None = None) -> None:
        self.inner.close(timeout=timeout)

    def throughput(self, acknowledged: int | None = None) -> Throughput:
        """``acknowledged`` records (default: every send) and their bytes over the send window."""
        if self.first_send is None or self.flushed_at is None:
            return Throughput(0, 0, 0.0)
        records = self.sent if acknowledged is None else acknowledged
        share = records / self.sent if self.sent else 0.0
        return Throughput(records, int(self.value_bytes * share), self.flushed_at - self.first_send)

    def latency(self) -> LatencySummary:
        return LatencySummary.from_seconds(self.latencies)


def framework_producer(settings: Settings, name: str, overrides: Mapping[str, Any] | None = None,
                       client: str = "kafka-python") -> Any:
    """The producer ProducerABC would build for ``name`` with ``PIPELINE_PRODUCER_CLIENT=client``, plus ``overrides``.

    Uses the framework's own builder, so the benchmark measures the shipped
    configuration (acks=all, idempotence, batch size, linger, compression).
    ``client`` is explicit (not the setting) so that each figure names its
    client; ``overrides`` are in that client's names (``linger_ms`` / ``linger.ms``).
    """
    from framework.producer.clients import ProducerClients

    # exactly_once=False: the sweep measures acks=1 on purpose (names are still checked)
    return ProducerClients(settings, name, producer_config=overrides, client=client,
                           exactly_once=False)._build_producer()


class NullProducer:
    """Acknowledges every send at once; no network, no batching (the framework's cost alone)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list | None = None, partition: int | None = None, timestamp_ms: int | None = None) -> Future:
        self.sent += 1
        return Future().success(None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass
