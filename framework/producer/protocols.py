"""What :class:`~framework.producer.base.ProducerABC` needs of the clients a test (or a user) injects.

Structural types (:class:`typing.Protocol`): kafka-python's ``KafkaProducer`` /
``KafkaConsumer``, ``requests.Session``, :class:`~framework.admin.KafkaAdmin`,
:class:`~framework.producer.confluent.ConfluentProducer` and the fakes of
:mod:`framework.testing.producer` all fit without subclassing anything. Only the
members the producer calls are listed, with kafka-python's names and units
(``timeout`` in seconds, ``timeout_ms`` in milliseconds).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

__all__ = ["AdminLike", "ConsumerFactory", "DeliveryFutureLike", "HttpResponseLike", "HttpSessionLike",
           "KafkaConsumerLike", "KafkaProducerLike", "ProducerFactory", "TopicDescriptionLike"]


class DeliveryFutureLike(Protocol):
    """kafka-python's ``FutureRecordMetadata``: the acknowledgement of one send."""

    @property
    def is_done(self) -> bool: ...

    @property
    def exception(self) -> BaseException | None: ...

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, exception, **kwargs)`` when the send failed (in the client's I/O thread)."""
        ...


class KafkaProducerLike(Protocol):
    """kafka-python's ``KafkaProducer`` as the producer uses it (acks=all, idempotent)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> DeliveryFutureLike: ...

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record sent so far is acknowledged or failed (``timeout`` in seconds)."""
        ...

    def close(self, timeout: float | None = None) -> None: ...


class KafkaConsumerLike(Protocol):
    """kafka-python's ``KafkaConsumer`` as the resume reader uses it (assigned partitions, no group)."""

    def assign(self, partitions: Sequence[Any]) -> None: ...

    def beginning_offsets(self, partitions: Sequence[Any]) -> Mapping[Any, int]: ...

    def end_offsets(self, partitions: Sequence[Any]) -> Mapping[Any, int]: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    def poll(self, timeout_ms: int = 0) -> Mapping[Any, Sequence[Any]]: ...

    def position(self, partition: Any) -> int: ...

    def close(self) -> None: ...


class HttpResponseLike(Protocol):
    """``requests.Response`` of a streamed GET."""

    @property
    def status_code(self) -> int: ...

    def iter_content(self, chunk_size: int | None = 1) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class HttpSessionLike(Protocol):
    """``requests.Session``: one streamed GET per connection (``timeout`` in seconds)."""

    def get(self, url: str, params: dict[str, Any] | None = None, stream: bool = False,
            timeout: Any = None) -> Any: ...


class TopicDescriptionLike(Protocol):
    @property
    def partition_count(self) -> int: ...


class AdminLike(Protocol):
    """:class:`~framework.admin.KafkaAdmin` as the producer uses it: list, create, describe topics."""

    def list_topics(self) -> list[str]: ...

    def create_topic(self, name: str, partitions: int | None = None) -> Any: ...

    def describe_topic(self, name: str) -> TopicDescriptionLike: ...

    def close(self) -> None: ...


#: builds a new Kafka producer (called again after a failed session)
ProducerFactory = Callable[[], KafkaProducerLike]
#: builds a new Kafka consumer for reading the end of the topics (one per session)
ConsumerFactory = Callable[[], KafkaConsumerLike]
