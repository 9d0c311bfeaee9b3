"""Producer clients the benchmark puts behind :class:`~framework.producer.ProducerABC` (``producer_factory=``).

- :class:`TimedProducer` wraps any KafkaProducer-like client and records, per
  record, the time from ``send`` to the acknowledgement (the latency Kafka's
  ``ProducerPerformance`` reports) and the value bytes;
- :func:`framework_producer` builds the kafka-python client exactly as the
  framework does (acks=all, idempotent, ``PIPELINE_PRODUCER_*``), plus overrides;
- :class:`NullProducer` acknowledges at once without any I/O: what is left is
  the framework's own cost per record;
- :class:`ConfluentProducer` adapts ``confluent_kafka.Producer`` (librdkafka)
  to the KafkaProducer interface ProducerABC uses (``send`` returning a future
  with ``add_errback``/``is_done``/``exception``, ``flush``, ``close``); it is
  only used when the package is importable (it is not a dependency).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from kafka.errors import KafkaError
from kafka.future import Future

from framework.bench.stats import LatencySummary, Throughput
from framework.settings import Settings


class TimedProducer:
    """Forwards to ``inner``; records value bytes, the send window and sampled send-to-ack latencies.

    Every ``sample``-th record (the first included) is timed from ``send`` to its
    acknowledgement; timing each one would cost more than some clients' whole
    send. The window runs from the first ``send`` to the return of the last
    ``flush`` (ProducerABC flushes at the end, which waits for every
    acknowledgement). Other attributes are forwarded (ProducerABC's halt reaches
    the client's ``_sender``). The latency callback runs where the client runs
    callbacks (kafka-python: its I/O thread).
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
        self.value_bytes += len(value) if value is not None else 0
        if count % self.sample:
            return self.inner.send(topic, value=value, key=key, headers=headers, partition=partition,
                                   timestamp_ms=timestamp_ms)
        started = time.perf_counter()
        if self.first_send is None:
            self.first_send = started
        future = self.inner.send(topic, value=value, key=key, headers=headers, partition=partition,
                                 timestamp_ms=timestamp_ms)
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


def framework_producer(settings: Settings, name: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The kafka-python producer ProducerABC would build for ``name``, with ``overrides`` applied.

    Uses the framework's own builder, so the benchmark measures the shipped
    configuration (acks=all, idempotence, batch size, linger, compression).
    """
    from framework.producer_clients import ProducerClients

    return ProducerClients(settings, name, producer_config=overrides)._build_producer()


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


def confluent_available() -> bool:
    """True when ``confluent_kafka`` (librdkafka) can be imported."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


class ConfluentDeliveryError(KafkaError):
    """A delivery librdkafka reported as failed."""


class ConfluentProducer:
    """``confluent_kafka.Producer`` behind the kafka-python producer interface ProducerABC uses.

    Idempotent with acks=all, like the framework's client: librdkafka then keeps
    each partition in send order without duplicates and turns a gap into a
    fatal error, so ProducerABC's exactly-once argument holds. Delivery reports
    arrive from :meth:`send` (every ``poll_every`` sends), :meth:`flush` and
    :meth:`close`.
    """

    def __init__(self, settings: Settings, config: Mapping[str, Any] | None = None, poll_every: int = 1000) -> None:
        from confluent_kafka import Producer

        s = settings
        conf: dict[str, Any] = {
            "bootstrap.servers": s.bootstrap_servers, "acks": "all", "enable.idempotence": True,
            "batch.size": s.producer_batch_size, "linger.ms": s.producer_linger_ms,
            "compression.type": s.producer_compression, "queue.buffering.max.messages": 1_000_000,
        }
        conf.update(config or {})
        self._producer = Producer(conf)
        self._poll_every = poll_every
        self._since_poll = 0

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list | None = None, partition: int | None = None, timestamp_ms: int | None = None) -> Future:
        future = Future()

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                future.success(None)
            else:
                future.failure(ConfluentDeliveryError(str(err)))

        kwargs: dict[str, Any] = {"value": value, "key": key, "headers": headers, "on_delivery": delivered}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, **kwargs)
                break
            except BufferError:  # the local queue is full: serve delivery reports, then retry
                self._producer.poll(0.05)
        self._since_poll += 1
        if self._since_poll >= self._poll_every:
            self._since_poll = 0
            self._producer.poll(0)
        return future

    def flush(self, timeout: float | None = None) -> None:
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        if remaining:
            raise ConfluentDeliveryError(f"{remaining} records were not delivered within {timeout} s")

    def close(self, timeout: float | None = None) -> None:
        """Flush, then release librdkafka's threads and connections."""
        try:
            self.flush(timeout)
        finally:
            close = getattr(self._producer, "close", None)  # confluent-kafka >= 2.11
            if close is not None:
                close()
