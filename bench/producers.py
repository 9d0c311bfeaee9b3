"""One ProducerABC run, instrumented: the producer under test in the produce, sweep and profile sections.

:func:`producer_class` declares a throw-away :class:`~framework.producer.base.ProducerABC`
subclass for one topic (a fresh topic per measurement, since a producer resumes
where the topic ends), exactly as a user would declare one; :func:`run_timed`
runs it with a :class:`~bench.clients.TimedProducer` around the
client and returns a :class:`ProduceRun`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from bench.clients import TimedProducer, framework_producer
from bench.stats import LatencySummary, Throughput
from framework.producer.base import PRODUCERS, ProducerABC
from framework.settings import Settings


class BenchProducer(ProducerABC):
    """Base of the benchmark's producers; ``shard``/``shards`` keep only some partitions (a prototype)."""

    abstract = True
    shard: int = 0
    shards: int = 1

    def transform(self, record: dict) -> dict | None:
        if self.shards == 1:
            return record
        # Sharding prototype (profile section only): this process sends the records of the partitions
        # p with p % shards == shard and drops the others. Throughput only: see the report for why
        # resuming exactly once needs each shard to read its own destinations.
        key = str(record[self.key_field]).encode()
        return record if self._partitioner(key, 0) % self.shards == self.shard else None


def producer_class(topic: str, endpoint: str, key_field: str | None = "id",
                   partitions: int | None = None) -> type[BenchProducer]:
    """A registered BenchProducer subclass named and writing after ``topic``."""
    cls = type("BenchTopicProducer", (BenchProducer,), {
        "abstract": False, "name": topic, "endpoint": endpoint, "topic": topic, "key_field": key_field,
        "partitions": partitions, "__module__": __name__})
    return cls  # type: ignore[return-value]


def forget(cls: type[ProducerABC]) -> None:
    """Remove a benchmark producer from the registry again."""
    PRODUCERS.unregister(cls.name)


@dataclass
class ProduceRun:
    """What one instrumented producer run measured."""

    sent: int
    throughput: Throughput
    latency: LatencySummary
    elapsed_s: float                       # the whole run() (topic checks, resume read, stream, flush)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"sent": self.sent, "throughput": self.throughput.to_dict(), "latency": self.latency.to_dict(),
                "elapsed_s": self.elapsed_s, **self.extra}


def run_timed(cls: type[ProducerABC], settings: Settings, *, session: Any = None,
              client_overrides: Mapping[str, Any] | None = None,
              client_factory: Callable[[], Any] | None = None, sample: int = 8, client: str = "kafka-python",
              **kwargs: Any) -> ProduceRun:
    """Run ``cls`` once with a timed client.

    The client is the framework's own for ``client`` (``kafka-python`` or ``confluent``, as
    ``PIPELINE_PRODUCER_CLIENT``; ``client_overrides`` in its names), or ``client_factory()``.
    """
    timed: list[TimedProducer] = []

    def factory() -> TimedProducer:
        inner = client_factory() if client_factory else framework_producer(settings, cls.name, client_overrides,
                                                                           client=client)
        timed.append(TimedProducer(inner, sample=sample))
        return timed[-1]

    producer = cls(settings, session=session, producer_factory=factory, progress_interval=3600.0, **kwargs)
    summary = producer.run()
    client = timed[-1] if timed else TimedProducer(None)
    window = None
    if client.first_send is not None and client.flushed_at is not None:
        window = (client.first_send + client.wall_offset, client.flushed_at + client.wall_offset)
    return ProduceRun(sent=summary.sent, throughput=client.throughput(summary.sent), latency=client.latency(),
                      elapsed_s=summary.elapsed, extra={"retries": summary.retries, "window_wall": window})
