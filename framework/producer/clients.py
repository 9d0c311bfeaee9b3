"""The Kafka and HTTP clients of one producer: built lazily, injectable, closed in one place.

:class:`ProducerClients` is what :class:`~framework.producer.base.ProducerABC` uses
instead of constructing clients itself, so a unit test passes fakes
(:mod:`framework.testing.producer`) and nothing connects before ``run()``.

Minimal use::

    clients = ProducerClients(settings, "metrics")            # nothing connects yet
    counts = clients.ensure_topics("metrics", 3, {"metrics.dlq": 1})
    producer = clients.producer()                             # KafkaProducer, acks=all, idempotent
    clients.close()

``client`` chooses the Kafka producer: ``"kafka-python"`` (the default, a
``KafkaProducer``) or ``"confluent"`` (librdkafka through
:class:`~framework.producer.confluent.ConfluentProducer`). ProducerABC passes
``PIPELINE_PRODUCER_CLIENT``; other users (:class:`~framework.producer.event_log.KafkaEventLog`)
keep kafka-python. ``producer_config`` overrides the client's own settings:
kafka-python argument names (``linger_ms``) or librdkafka property names
(``linger.ms``). Both clients are built the same way: a broker that does not
answer raises :class:`KafkaFailure` (the producer retries with backoff), a bad
configuration raises :class:`~framework.errors.ProducerError`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from framework.errors import FrameworkError, ProducerConfigError, ProducerError, TopicError
from framework.producer.config import check_producer_config
from framework.producer.protocols import (AdminLike, ConsumerFactory, HttpSessionLike, KafkaProducerLike,
                                          ProducerFactory)
from framework.settings import PRODUCER_CLIENTS, Settings

BROKER_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default message.max.bytes (a topic's max.message.bytes)
CONNECT_TIMEOUT = 30.0  # seconds the confluent client waits for a broker when built (kafka-python's bootstrap wait)


class KafkaFailure(Exception):
    """Kafka refused or lost something; the producer restarts its session from Kafka's state."""


class ProducerClients:
    """Lazily built clients; injected ones are used as given and never closed here."""

    def __init__(self, settings: Settings, name: str, *, producer: KafkaProducerLike | None = None,
                 producer_factory: ProducerFactory | None = None, session: HttpSessionLike | None = None,
                 admin: AdminLike | None = None, consumer_factory: ConsumerFactory | None = None,
                 producer_config: Mapping[str, Any] | None = None, client: str = "kafka-python",
                 exactly_once: bool = True) -> None:
        if client not in PRODUCER_CLIENTS:
            raise ProducerError(f"Unknown producer client {client!r}; available: {', '.join(PRODUCER_CLIENTS)}.")
        self.settings = settings
        self.name = name
        self.client = client
        # before any I/O: unknown keys and keys that break exactly-once fail here (framework.producer.config)
        self.producer_config = check_producer_config(producer_config, client, exactly_once=exactly_once)
        self._injected_producer = producer
        self._producer_factory = producer_factory
        self._session: Any = session  # HttpSessionLike; requests.Session once built here
        self._admin: Any = admin  # AdminLike
        self._owns_session = self._owns_admin = False
        self.consumer_factory = consumer_factory or self._new_consumer
        self.current: Any = None  # the producer in use, if any

    # ------------------------------------------------------------- Kafka producer
    def producer(self) -> Any:
        """The producer in use, built on first call (``KafkaFailure`` if the brokers do not answer)."""
        if self.current is None:
            if self._injected_producer is not None:
                self.current = self._injected_producer
            elif self._producer_factory is not None:
                self.current = self._producer_factory()
            else:
                self.current = self._build_producer()
        return self.current

    def _build_producer(self) -> Any:
        if self.client == "confluent":
            return self._build_confluent_producer()
        from kafka import KafkaProducer
        from kafka.errors import KafkaConfigurationError, KafkaError

        s = self.settings
        config = dict(bootstrap_servers=s.bootstrap_servers, client_id=f"pipeline-producer-{self.name}",
                      acks="all", enable_idempotence=True, batch_size=s.producer_batch_size,
                      linger_ms=s.producer_linger_ms, allow_auto_create_topics=False,
                      compression_type=None if s.producer_compression == "none" else s.producer_compression)
        config.update(self.producer_config)
        try:
            return KafkaProducer(**config)
        except (KafkaConfigurationError, AssertionError, ValueError, TypeError) as exc:  # never retried
            raise ProducerConfigError(f"The Kafka producer of {self.name!r} cannot be created: {exc}") from None
        except KafkaError as exc:
            raise KafkaFailure(f"connecting the producer raised {type(exc).__name__}: {exc}") from None

    def _build_confluent_producer(self) -> Any:
        try:
            from confluent_kafka import KafkaException

            from framework.producer.confluent import ConfluentProducer
        except ImportError as exc:
            raise ProducerError(f"PIPELINE_PRODUCER_CLIENT=confluent needs the confluent-kafka package ({exc}); "
                                "install it with `pip install 'confluent-kafka>=2.6,<3'`.") from None
        try:
            producer = ConfluentProducer(self.settings, self.producer_config,
                                         client_id=f"pipeline-producer-{self.name}")
        except (KafkaException, ValueError, TypeError) as exc:
            reason = exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else exc
            raise ProducerConfigError(f"The Kafka producer of {self.name!r} cannot be created: {reason} (with "
                                "PIPELINE_PRODUCER_CLIENT=confluent, producer_config takes librdkafka property "
                                "names such as linger.ms).") from None
        try:
            producer.wait_for_brokers(CONNECT_TIMEOUT)
        except KafkaException as exc:
            _quietly(lambda: producer.close(timeout=0))
            reason = exc.args[0].str() if exc.args else exc
            raise KafkaFailure(f"connecting the producer (librdkafka) failed: {reason}") from None
        return producer

    def halt(self) -> None:
        """Stop the producer at once, abandoning what it has not sent (from a delivery errback).

        kafka-python bumps the producer epoch after a failed batch and would then
        send the later batches of the same partition, leaving a gap; force-closing
        the sender in the errback (which runs in that thread) prevents it. The
        confluent client (which has ``halt``) purges its queued and in-flight
        records, fails their futures and refuses later sends.
        """
        halt = getattr(self.current, "halt", None)
        if callable(halt):
            halt()
            return
        sender = getattr(self.current, "_sender", None)
        if sender is not None and hasattr(sender, "force_close"):
            sender.force_close()

    def discard_producer(self, timeout: float = 10.0) -> None:
        """Stop and forget a failed producer; the next :meth:`producer` call builds a new one.

        Its I/O thread is halted and awaited first (the confluent client: purged, then
        closed, which joins librdkafka's threads), so the old client cannot write
        anything once the next session has read Kafka's state.
        """
        producer = self.current
        if producer is not None and producer is not self._injected_producer:
            self.halt()
            sender = getattr(producer, "_sender", None)
            if sender is not None and hasattr(sender, "join"):
                sender.join(timeout)
            _quietly(lambda: producer.close(timeout=0))
        self.current = None

    # ------------------------------------------------------------- others
    def _new_consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
                             enable_auto_commit=False, client_id=f"pipeline-producer-{self.name}-resume",
                             fetch_max_wait_ms=100)

    def session(self) -> Any:
        """The HTTP session (``requests.Session`` unless one was injected)."""
        if self._session is None:
            import requests

            self._session, self._owns_session = requests.Session(), True
        return self._session

    def admin(self) -> Any:
        """The topic admin (:class:`~framework.admin.KafkaAdmin` unless one was injected)."""
        if self._admin is None:
            from framework.admin import KafkaAdmin

            self._admin, self._owns_admin = KafkaAdmin(self.settings), True
        return self._admin

    def ensure_topics(self, topic: str, partitions: int | None, others: Mapping[str, int],
                      owner: str = "the producer") -> dict[str, int]:
        """Create missing topics; return {topic: partition count} for ``topic`` and ``others``.

        ``partitions`` None means ``settings.topic_partitions`` when creating and
        "whatever it has" when the topic exists; an explicit count that differs from
        the existing topic's raises :class:`TopicError`.
        """
        admin = self.admin()
        existing = set(admin.list_topics())
        counts: dict[str, int] = {}
        for name, wanted in ((topic, partitions or self.settings.topic_partitions), *others.items()):
            if name not in existing:
                admin.create_topic(name, partitions=wanted)
            counts[name] = admin.describe_topic(name).partition_count
        if partitions and counts[topic] != partitions:
            raise TopicError(f"Topic {topic!r} has {counts[topic]} partitions but {owner} declares "
                             f"partitions = {partitions}; declare {counts[topic]} or use a new topic (changing "
                             "the count would break the exactly-once resume).")
        return counts

    def max_record_bytes(self, topic: str) -> int:
        """The largest record (bytes in a batch) both ``topic`` and this producer take.

        The smaller of the topic's ``max.message.bytes`` (the broker default,
        1048588, when the admin does not report it) and the client's own limit:
        kafka-python's ``max_request_size`` (default 1048576) or librdkafka's
        ``message.max.bytes`` (default 1000000), from ``producer_config`` if set there.
        """
        configs = getattr(self.admin().describe_topic(topic), "configs", None) or {}
        try:
            topic_limit = int(configs.get("max.message.bytes", BROKER_MAX_MESSAGE_BYTES))
        except (TypeError, ValueError):
            topic_limit = BROKER_MAX_MESSAGE_BYTES
        if self.client == "confluent":
            client_limit = self.producer_config.get("message.max.bytes", 1_000_000)
        else:
            client_limit = self.producer_config.get("max_request_size", 1_048_576)
        return min(topic_limit, int(client_limit))

    def close(self, timeout: float = 10.0) -> None:
        """Close what was built here (the producer after sending what it holds)."""
        if self.current is not None and self.current is not self._injected_producer:
            _quietly(lambda: self.current.close(timeout=timeout))
        self.current = None
        if self._owns_admin:
            _quietly(self._admin.close)
            self._admin, self._owns_admin = None, False
        if self._owns_session:
            _quietly(self._session.close)
            self._session, self._owns_session = None, False


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
    except FrameworkError:
        raise
    except Exception:  # noqa: BLE001 - closing after a failure must not hide the failure
        pass
