"""KafkaEventLog: log one event at a time to a Kafka topic and know it is there before answering.

For request/response applications (a web API that records what its users do):
each call of :meth:`KafkaEventLog.log` sends one JSON event with the project's
producer configuration (``acks=all``, idempotent) and **blocks until Kafka
acknowledged it**, so an application that answers "done" only after ``log``
returned never reports an event that could still be lost. ``log`` is bounded
(``timeout`` seconds) and raises :class:`~framework.errors.EventLogError`, one
sentence, when the event is not acknowledged: broker down, timeout, refusal,
an event that is not JSON.

Minimal use::

    from framework.producer.event_log import KafkaEventLog

    events = KafkaEventLog(settings, "events", key_field="user")   # nothing connects yet
    partition, offset = events.log({"user": "ann", "action": "login"})   # blocks until acked
    events.close()

Contract:

- Nothing connects in ``__init__``. The first :meth:`log` creates the topic if it
  is missing (through :class:`~framework.admin.KafkaAdmin`, ``partitions`` or
  ``PIPELINE_TOPIC_PARTITIONS``) and builds ONE long-lived ``KafkaProducer``
  shared by every later call; a failed first use is retried by the next call.
- Thread-safe: call :meth:`log` from any number of request threads; concurrent
  events travel together in the producer's batches.
- ``key_field``: the event field whose value (as text) is the record key, so
  events with the same value go to the same partition, in order. An event
  without that field is refused; a ``None`` value gives a record without key.
- An event for which ``log`` raised was not acknowledged; it may still reach
  Kafka if it was in flight when the time ran out (``delivery_timeout_ms`` is set
  to the same bound, so the producer gives up on it then too). Treat such an
  event as "not confirmed", never as "confirmed absent".
- ``producer=`` / ``producer_factory=`` and ``admin=`` may be injected (tests pass
  :class:`~framework.testing.producer.RecordingProducer` and
  :class:`~framework.testing.producer.FakeAdmin`); injected clients are not closed here.

:class:`InMemoryEventLog` has the same ``log``/``close`` interface and keeps the
events in a list: for unit tests of applications and for demos without Kafka.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, Protocol

import orjson

from framework.errors import EventLogError, FrameworkError
from framework.log import get_logger
from framework.producer.clients import ProducerClients
from framework.settings import Settings

_log = get_logger("event_log")

DEFAULT_TIMEOUT = 10.0


class EventLog(Protocol):
    """What an application needs from an event log (:class:`KafkaEventLog`, :class:`InMemoryEventLog`)."""

    topic: str

    def log(self, event: Mapping[str, Any]) -> tuple[int, int]:
        """Record ``event``; return (partition, offset) once it is durable, or raise EventLogError."""

    def close(self) -> None:
        """Release the clients; later calls of ``log`` raise EventLogError."""


class KafkaEventLog:
    """A long-lived, thread-safe Kafka producer that confirms every event before returning (see module doc)."""

    def __init__(self, settings: Settings | None = None, topic: str = "events", key_field: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, partitions: int | None = None, producer: Any = None,
                 producer_factory: Callable[[], Any] | None = None, admin: Any = None,
                 producer_config: Mapping[str, Any] | None = None) -> None:
        """No I/O. ``timeout``: seconds one :meth:`log` may block at most (also the producer's delivery timeout).

        ``producer_config`` overrides kafka-python settings (default ``linger_ms=0``:
        one event per request is latency-bound, concurrent events still share batches).
        """
        if not isinstance(topic, str) or not topic:
            raise EventLogError(f"The topic of an event log must be a non-empty string, not {topic!r}.")
        if not timeout > 0:
            raise EventLogError(f"timeout={timeout!r} is not valid; give the seconds one event may wait for its "
                                "acknowledgement, a number above 0.")
        self.settings = settings or Settings.from_env()
        self.topic = topic
        self.key_field = key_field
        self.timeout = float(timeout)
        self.partitions = partitions
        self._admin = admin
        self._clients = ProducerClients(self.settings, f"event-log-{topic}", producer=producer,
                                        producer_factory=producer_factory,
                                        producer_config=_producer_config(self.timeout, producer_config))
        self._lock = threading.Lock()
        self._topic_ready = False
        self._closed = False

    # ------------------------------------------------------------------ logging
    def log(self, event: Mapping[str, Any]) -> tuple[int, int]:
        """Send ``event`` as JSON and block until Kafka acknowledged it (acks=all): (partition, offset).

        Blocks ``timeout`` seconds at most (plus the time to connect on first use);
        raises :class:`EventLogError` when the event was not acknowledged.
        """
        value, key = self._encode(event)
        producer = self._producer()
        deadline = time.monotonic() + self.timeout
        try:
            future = producer.send(self.topic, value=value, key=key)
        except Exception as exc:  # noqa: BLE001 - KafkaTimeoutError (no metadata), a closed or failed client
            if not _is_timeout(exc):  # a broken client is replaced; a slow or absent broker is waited for
                self._discard(producer)
            raise self._not_logged(exc) from None
        done = threading.Event()
        future.add_callback(lambda _metadata: done.set())
        future.add_errback(lambda _error: done.set())
        if not done.wait(max(0.0, deadline - time.monotonic())):
            raise EventLogError(
                f"The event was not logged: Kafka at {self.settings.bootstrap_servers} did not acknowledge it "
                f"within {self.timeout:g} s; the broker may be down or overloaded, try again later.")
        if future.exception is not None:
            raise self._not_logged(future.exception)
        metadata = future.value
        return int(metadata.partition or 0), int(metadata.offset)

    def _encode(self, event: Mapping[str, Any]) -> tuple[bytes, bytes | None]:
        if not isinstance(event, Mapping):
            raise EventLogError(f"An event must be a dict of JSON values, not {type(event).__name__} {event!r}.")
        key: bytes | None = None
        if self.key_field is not None:
            if self.key_field not in event:
                raise EventLogError(f"The event cannot be logged: it has no field {self.key_field!r}, the key field "
                                    f"of the event log of topic {self.topic!r}.")
            raw = event[self.key_field]
            key = None if raw is None else (raw if isinstance(raw, str) else orjson.dumps(raw).decode()).encode()
        try:
            value = orjson.dumps(dict(event))
        except TypeError as exc:
            raise EventLogError(f"The event cannot be logged: it is not JSON-serializable ({exc}).") from None
        return value, key

    def _not_logged(self, exc: BaseException) -> EventLogError:
        name = type(exc).__name__
        if _is_timeout(exc):
            return EventLogError(
                f"The event was not logged: Kafka at {self.settings.bootstrap_servers} did not acknowledge it "
                f"within {self.timeout:g} s ({name}); the broker may be down or overloaded, try again later.")
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        return EventLogError(f"The event was not logged: Kafka at {self.settings.bootstrap_servers} refused or "
                             f"lost it ({name}: {detail}); try again later.")

    # ------------------------------------------------------------------ clients
    def _producer(self) -> Any:
        """The shared producer, built (and the topic created) on first use, under the lock."""
        if not self._lock.acquire(timeout=self.timeout):
            raise EventLogError(f"The event was not logged: the Kafka producer of topic {self.topic!r} is still "
                                f"connecting after {self.timeout:g} s; try again later.")
        try:
            if self._closed:
                raise EventLogError(f"The event log of topic {self.topic!r} is closed; create a new one.")
            try:
                if not self._topic_ready:
                    self._ensure_topic()
                    self._topic_ready = True
                if self._clients.current is None:
                    self._clients.producer()
                    _log.info("Event log of topic {} connected to {}", self.topic, self.settings.bootstrap_servers)
                return self._clients.current
            except FrameworkError as exc:  # KafkaUnavailableError, TopicError, ProducerError: already a sentence
                raise EventLogError(f"The event was not logged: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - KafkaFailure, kafka-python errors of the admin client
                raise EventLogError(f"The event was not logged: Kafka at {self.settings.bootstrap_servers} does not "
                                    f"answer ({type(exc).__name__}: {exc}); try again later.") from None
        finally:
            self._lock.release()

    def _ensure_topic(self) -> None:
        from framework.admin import KafkaAdmin

        admin = self._admin if self._admin is not None else KafkaAdmin(self.settings, timeout=self.timeout)
        try:
            if self.topic not in admin.list_topics():
                admin.create_topic(self.topic, partitions=self.partitions)
        finally:
            if admin is not self._admin:
                admin.close()

    def _discard(self, producer: Any) -> None:
        """Forget a producer whose ``send`` failed, so the next event builds a new one."""
        with self._lock:
            if self._clients.current is producer:
                self._clients.discard_producer(timeout=self.timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close the producer this log built (after sending what it holds); idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._clients.close(timeout=self.timeout if timeout is None else timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "KafkaEventLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _producer_config(timeout: float, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """kafka-python settings bounding every wait by ``timeout`` (delivery >= linger + request, as it requires)."""
    ms = int(timeout * 1000)
    config: dict[str, Any] = {"linger_ms": 0, "max_block_ms": ms, "request_timeout_ms": ms,
                              "bootstrap_timeout_ms": ms, "reconnect_backoff_max_ms": 1000}
    config.update(overrides or {})
    config.setdefault("delivery_timeout_ms", max(ms, config["linger_ms"] + config["request_timeout_ms"]))
    return config


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


class InMemoryEventLog:
    """Events in a list, one partition: ``log`` returns (0, offset). ``fail`` makes it raise EventLogError.

    For unit tests of applications and demos without Kafka; thread-safe.
    ``fail``: None, an exception message (every call raises), or a callable
    ``event -> message | None``.
    """

    def __init__(self, topic: str = "events", fail: str | Callable[[Mapping[str, Any]], str | None] | None = None
                 ) -> None:
        self.topic = topic
        self.fail = fail
        self.events: list[dict[str, Any]] = []
        self.closed = False
        self._lock = threading.Lock()

    def log(self, event: Mapping[str, Any]) -> tuple[int, int]:
        problem = self.fail(event) if callable(self.fail) else self.fail
        if problem:
            raise EventLogError(problem)
        if self.closed:
            raise EventLogError(f"The event log of topic {self.topic!r} is closed; create a new one.")
        data = orjson.loads(orjson.dumps(dict(event)))  # what a reader of the topic would see
        with self._lock:
            self.events.append(data)
            return 0, len(self.events) - 1

    def close(self) -> None:
        self.closed = True
