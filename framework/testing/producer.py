"""Fakes to unit-test a :class:`~framework.producer.base.ProducerABC` subclass without a broker or an API.

- :class:`FakeNdjsonSession`: a requests-like session serving an NDJSON stream that
  honours ``from``; it can refuse connections or break a response mid-line.
- :class:`RecordingProducer`: a KafkaProducer-like ``send``/``flush``/``close``
  returning kafka-python futures, recording every message (topic, partition, key,
  value, headers); deliveries can be made to fail.
- :class:`InMemoryKafka`: topics and partition logs in memory, with the admin, the
  recording producer and the consumer the producer needs; :meth:`InMemoryKafka.clients`
  gives them as keyword arguments. A second run against the same ``InMemoryKafka``
  resumes exactly like against a real broker.

Example (a complete pytest test)::

    from framework.settings import Settings
    from framework.testing.producer import FakeNdjsonSession, InMemoryKafka
    from mypkg.producers import TemperatureProducer      # topic "temperatures", key_field "sensor"

    def test_temperature_producer():
        kafka = InMemoryKafka()
        session = FakeNdjsonSession([{"sensor": 1, "c": 20.5}, {"sensor": 2, "c": 21.0}, {"c": 3}])
        summary = TemperatureProducer(Settings.from_env(), session=session, **kafka.clients()).run()
        assert summary.sent == 2 and summary.dead_lettered == 1       # the third has no key
        assert [m.json() for m in kafka.messages("temperatures")] == [{"sensor": 1, "c": 20.5},
                                                                      {"sensor": 2, "c": 21.0}]
        assert kafka.messages("temperatures.dlq")[0].header("dlq-reason").startswith(b"the record has no")
        assert TemperatureProducer(Settings.from_env(), session=session, **kafka.clients()).run().sent == 0
"""
from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import orjson
import requests
from kafka.future import Future

from framework.admin import PartitionInfo, TopicInfo

ConsumedRecord = namedtuple("ConsumedRecord", ["topic", "partition", "offset", "key", "value", "headers"])


@dataclass
class RecordedMessage:
    """One message given to :meth:`RecordingProducer.send`."""

    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    offset: int = -1

    def header(self, name: str) -> bytes | None:
        """The value of header ``name``, or None."""
        return next((v for k, v in self.headers if k == name), None)

    @property
    def position(self) -> int | None:
        """The ``source-position`` header as an int."""
        raw = self.header("source-position")
        return None if raw is None else int(raw)

    def json(self) -> Any:
        return orjson.loads(self.value)


class RecordFuture(Future):  # type: ignore[misc]  # kafka-python ships no type information
    """A kafka-python future with ``get()``, like ``FutureRecordMetadata``."""

    def get(self, timeout: float | None = None) -> Any:
        if not self.is_done:
            raise TimeoutError("The record was not delivered yet; call flush() first.")
        if self.exception is not None:
            raise self.exception
        return self.value


class RecordingProducer:
    """Records sends; a KafkaProducer stand-in.

    ``auto_ack=True`` delivers each send at once; ``False`` leaves futures pending until
    :meth:`flush` (like a real producer with linger). ``fail(message) -> Exception | None``
    makes a delivery fail; after a failure nothing more is delivered by this instance (as
    with the halted client of ProducerABC), so pass ``producer_factory=kafka.producer`` to
    let the producer retry with a new one. ``kafka`` (an :class:`InMemoryKafka`) receives
    delivered messages.
    """

    def __init__(self, kafka: "InMemoryKafka | None" = None, *, auto_ack: bool = True,
                 fail: Callable[[RecordedMessage], BaseException | None] | None = None) -> None:
        self.kafka = kafka
        self.auto_ack = auto_ack
        self.fail = fail
        self.messages: list[RecordedMessage] = []
        self.flushes = 0
        self.closed = False
        self.failed: BaseException | None = None
        self._pending: list[tuple[RecordedMessage, RecordFuture]] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> RecordFuture:
        if self.closed:
            raise RuntimeError("RecordingProducer already closed")
        headers = list(headers or [])
        if not all(isinstance(h, tuple) and isinstance(h[0], str) and isinstance(h[1], bytes) for h in headers):
            raise TypeError("All headers items must be (str, bytes) tuples")
        for name, data in (("key", key), ("value", value)):
            if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"Unsupported type for serialized {name}: {type(data)}")
        if self.kafka is not None:
            count = self.kafka.topics.get(topic)
            if count is None:
                raise ValueError(f"Topic {topic} not found (auto creation is off)")
            if partition is not None and not 0 <= partition < count:
                raise ValueError(f"Partition {partition} not in topic {topic} ({count} partitions)")
        message = RecordedMessage(topic, partition, key, bytes(value) if value is not None else b"", headers)
        self.messages.append(message)
        future = RecordFuture()
        self._pending.append((message, future))
        if self.auto_ack:
            self._deliver()
        return future

    def _deliver(self) -> None:
        pending, self._pending = self._pending, []
        for message, future in pending:
            error = self.failed or (self.fail(message) if self.fail else None)
            if error is not None:
                self.failed = error  # like ProducerABC's halted client: nothing is delivered after a failure
                future.failure(error)
            else:
                if self.kafka is not None:
                    self.kafka.append(message)
                future.success(message)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
        self._deliver()

    def close(self, timeout: float | None = None) -> None:
        self.flush(timeout)
        self.closed = True

    def sent_to(self, topic: str) -> list[RecordedMessage]:
        return [m for m in self.messages if m.topic == topic]


class InMemoryKafka:
    """Topics and partition logs in memory, with fake clients (admin, producer, consumer)."""

    def __init__(self, topics: dict[str, int] | None = None, default_partitions: int = 3) -> None:
        self.topics: dict[str, int] = dict(topics or {})
        self.default_partitions = default_partitions
        self.logs: dict[tuple[str, int], list[RecordedMessage]] = {}
        self.producers: list[RecordingProducer] = []

    def append(self, message: RecordedMessage) -> None:
        log = self.logs.setdefault((message.topic, message.partition or 0), [])
        message.offset = len(log)
        log.append(message)

    def messages(self, topic: str) -> list[RecordedMessage]:
        """Every stored message of ``topic``, partition by partition, in offset order."""
        return [m for p in range(self.topics.get(topic, 0)) for m in self.logs.get((topic, p), [])]

    def clients(self, **producer_options: Any) -> dict[str, Any]:
        """Keyword arguments for a producer: ``producer_factory``, ``admin``, ``consumer_factory``.

        Each producer session gets a new :class:`RecordingProducer` (options as given),
        appended to :attr:`producers`.
        """
        return {"producer_factory": lambda: self.producer(**producer_options), "admin": FakeAdmin(self),
                "consumer_factory": lambda: FakeConsumer(self)}

    def producer(self, **options: Any) -> RecordingProducer:
        """A new :class:`RecordingProducer` delivering into this Kafka (kept in :attr:`producers`)."""
        producer = RecordingProducer(self, **options)
        self.producers.append(producer)
        return producer


class FakeAdmin:
    """The part of :class:`~framework.admin.KafkaAdmin` a producer uses."""

    def __init__(self, kafka: InMemoryKafka) -> None:
        self.kafka = kafka
        self.created: list[str] = []

    def list_topics(self, include_internal: bool = False) -> list[str]:
        return sorted(self.kafka.topics)

    def create_topic(self, name: str, partitions: int | None = None, replication_factor: int | None = None,
                     configs: Any = None) -> bool:
        if name in self.kafka.topics:
            return False
        self.kafka.topics[name] = partitions or self.kafka.default_partitions
        self.created.append(name)
        return True

    def describe_topic(self, name: str) -> TopicInfo:
        return TopicInfo(name, tuple(PartitionInfo(p, 1, (1,), (1,)) for p in range(self.kafka.topics[name])))

    def close(self) -> None:
        pass


class FakeConsumer:
    """The part of KafkaConsumer the resume logic uses (assign, offsets, seek, poll, position)."""

    def __init__(self, kafka: InMemoryKafka) -> None:
        self.kafka = kafka
        self._positions: dict[Any, int] = {}

    def assign(self, partitions: Iterable[Any]) -> None:
        self._positions = {tp: 0 for tp in partitions}

    def beginning_offsets(self, partitions: Iterable[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: 0 for tp in partitions}

    def end_offsets(self, partitions: Iterable[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: len(self.kafka.logs.get((tp.topic, tp.partition), [])) for tp in partitions}

    def seek(self, partition: Any, offset: int) -> None:
        self._positions[partition] = offset

    def position(self, partition: Any, timeout_ms: int | None = None) -> int:
        return self._positions[partition]

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[ConsumedRecord]]:
        out = {}
        for tp, offset in self._positions.items():
            log = self.kafka.logs.get((tp.topic, tp.partition), [])[offset:]
            if log:
                out[tp] = [ConsumedRecord(m.topic, m.partition, m.offset, m.key, m.value, m.headers) for m in log]
                self._positions[tp] = offset + len(log)
        return out

    def close(self) -> None:
        pass


class FakeResponse:
    """A streamed requests response made of chunks; may raise mid-stream."""

    def __init__(self, chunks: Sequence[bytes], status_code: int = 200, error: BaseException | None = None,
                 headers: dict[str, str] | None = None, text: str = "") -> None:
        self.chunks = chunks
        self.status_code = status_code
        self.text = text  # the body of an error answer
        self.error = error
        self.headers = dict(headers or {})
        self.closed = False

    def iter_content(self, chunk_size: int | None = 1) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self.closed:
                raise requests.exceptions.ChunkedEncodingError("response closed")
            yield chunk
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


class FakeNdjsonSession:
    """A requests-like session serving one NDJSON stream that honours ``from``.

    ``records`` (dicts) are served as ``{"_position": i, ...}`` lines like the pipeline's
    API; ``lines`` (str or bytes, possibly malformed) are served verbatim, ``lines[from:]``.
    ``breaks[i]``: connection *i* sends that many lines, then half of the next and breaks
    (``ChunkedEncodingError``). ``refuse``: the first that many connections are refused
    (``ConnectionError``). ``status``: HTTP status of every answer. ``chunk_size``: cut the
    body into chunks of that many bytes (default: one chunk per line). ``on_request(i, params)``
    is called at each GET. ``requests`` holds the params of every GET. ``ignore_from``: serve
    every line from the first whatever ``from`` asks (like a static file server);
    ``from_header``: state the first position in an ``X-Stream-From`` header (like the API).
    """

    def __init__(self, records: Sequence[dict[str, Any]] | None = None, *, lines: Sequence[str | bytes] | None = None,
                 breaks: Sequence[int] = (), refuse: int = 0, status: int = 200, chunk_size: int | None = None,
                 on_request: Callable[[int, dict[str, Any]], None] | None = None, ignore_from: bool = False,
                 from_header: bool = False) -> None:
        self.ignore_from = ignore_from
        self.from_header = from_header
        if lines is None:
            lines = [orjson.dumps({"_position": i, **r}) for i, r in enumerate(records or [])]
        self.lines = [line.encode() if isinstance(line, str) else bytes(line) for line in lines]
        self.breaks = list(breaks)
        self.refuse = refuse
        self.status = status
        self.chunk_size = chunk_size
        self.on_request = on_request
        self.requests: list[dict[str, Any]] = []
        self.urls: list[str] = []

    def get(self, url: str, params: dict[str, Any] | None = None, stream: bool = False,
            timeout: Any = None) -> FakeResponse:
        params = dict(params or {})
        index = len(self.requests)
        self.requests.append(params)
        self.urls.append(url)
        if self.on_request is not None:
            self.on_request(index, params)
        if index < self.refuse:
            raise requests.ConnectionError(f"connection refused (fake, attempt {index + 1})")
        if self.status != 200:
            return FakeResponse([], status_code=self.status)
        start = 0 if self.ignore_from else int(params.get("from", 0))
        headers = {"X-Stream-From": str(start)} if self.from_header else {}
        lines = [line + b"\n" for line in self.lines[start:]]
        error = None
        if index - self.refuse < len(self.breaks):
            keep = self.breaks[index - self.refuse]
            if keep < len(lines):
                half = lines[keep][: max(1, len(lines[keep]) // 2)]
                lines = lines[:keep] + [half]
                error = requests.exceptions.ChunkedEncodingError("Connection broken: fake break")
        chunks = lines
        if self.chunk_size:
            body = b"".join(lines)
            chunks = [body[i:i + self.chunk_size] for i in range(0, len(body), self.chunk_size)]
        return FakeResponse(chunks, error=error, headers=headers)

    def close(self) -> None:
        pass


if TYPE_CHECKING:  # mypy checks that the fakes (and the real admin) fit what ProducerABC accepts
    from framework.admin import KafkaAdmin
    from framework.producer.protocols import AdminLike, HttpSessionLike, KafkaConsumerLike, KafkaProducerLike

    def _fits(producer: RecordingProducer, session: FakeNdjsonSession, admin: FakeAdmin, consumer: FakeConsumer,
              kafka_admin: KafkaAdmin) -> tuple[KafkaProducerLike, HttpSessionLike, AdminLike, KafkaConsumerLike,
                                                AdminLike]:
        return producer, session, admin, consumer, kafka_admin
