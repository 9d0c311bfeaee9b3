"""``producer_config`` checked before any client is built, as kafka-python checks its own arguments.

:func:`check_producer_config` runs in ``ProducerABC.__init__`` (through
:class:`~framework.producer.clients.ProducerClients`), so a wrong key fails at construction,
before any connection, with one sentence:

- **Unknown keys** are refused with a suggestion. kafka-python's names are the keys of
  ``KafkaProducer.DEFAULT_CONFIG`` (and its ``DEPRECATED_CONFIGS``), read from the
  installed library; librdkafka's are its producer properties
  (:mod:`framework.producer.librdkafka_properties`, from its ``CONFIGURATION.md``).
  The other client's spelling (``linger.ms`` for ``linger_ms``) is suggested too.
- **Keys that break the exactly-once contract** (see ``ProducerABC``) are refused with the
  reason: ``acks`` other than ``all``/``-1``; idempotence off; ``retries`` 0; more than
  5 requests in flight per connection (the most an idempotent producer keeps in order, see
  ``max.in.flight.requests.per.connection`` in Kafka's producer configuration); and for
  librdkafka ``enable.gapless.guarantee`` off or a local ``message.timeout.ms`` /
  ``delivery.timeout.ms`` (see :mod:`framework.producer.confluent`, "No gap").

A benchmark that measures ``acks=1`` on purpose passes ``exactly_once=False``: names are
still checked, the contract is not.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping

from framework.errors import ProducerConfigError
from framework.producer.librdkafka_properties import PRODUCER_PROPERTIES, PYTHON_CLIENT_KEYS

__all__ = ["MAX_IN_FLIGHT", "check_producer_config", "known_keys"]

#: the most in-flight requests per connection for which an idempotent producer keeps the order
MAX_IN_FLIGHT = 5

_LABEL = {"kafka-python": "kafka-python KafkaProducer argument", "confluent": "librdkafka producer property"}
_ACKS = ("the exactly-once contract needs acks=all (-1): a record counts as sent only once every in-sync "
         "replica has it, otherwise a broker failure can lose acknowledged records")
_IDEMPOTENCE = ("idempotence is what keeps each partition free of duplicates and in send order when a batch "
                "is retried, which the exactly-once resume relies on")
_RETRIES = ("with no retries a transient broker error fails the batch instead of resending it in order, "
            "and an idempotent producer needs retries")
_IN_FLIGHT = (f"an idempotent producer keeps the order of at most {MAX_IN_FLIGHT} requests in flight per "
              "connection, so more can reorder records and break the resume")
_GAPLESS = ("the gapless guarantee turns a failed batch that could leave a gap into a fatal error; without it "
            "a later batch could be written after a lost one")
_TIMEOUT = ("a local delivery timeout can fail a queued batch while later ones are written, leaving a gap; "
            "the framework keeps it at 0 and bounds the wait with its flush timeout")


def known_keys(client: str) -> frozenset[str]:
    """The configuration keys ``client`` accepts (``"kafka-python"`` or ``"confluent"``)."""
    if client == "confluent":
        return PRODUCER_PROPERTIES | PYTHON_CLIENT_KEYS
    from kafka import KafkaProducer

    return frozenset(KafkaProducer.DEFAULT_CONFIG) | frozenset(getattr(KafkaProducer, "DEPRECATED_CONFIGS", ()))


def check_producer_config(config: Mapping[str, Any] | None, client: str = "kafka-python", *,
                          exactly_once: bool = True) -> dict[str, Any]:
    """``config`` as a dict when every key is known to ``client`` and (``exactly_once``) keeps the contract.

    Raises :class:`~framework.errors.ProducerConfigError`, one sentence naming the key, the value and
    what to do. No I/O: kafka-python's names come from the installed module.
    """
    config = dict(config or {})
    known = known_keys(client)
    for key in config:
        if not isinstance(key, str) or key not in known:
            raise ProducerConfigError(f"producer_config key {key!r} is not a {_LABEL[client]}; "
                                      f"{_suggestion(key, known, client)}")
    if client == "kafka-python":
        _check_kafka_python_values(config)
    if exactly_once:
        rules = _CONFLUENT_RULES if client == "confluent" else _KAFKA_PYTHON_RULES
        for key, value in config.items():
            rule = rules.get(key)
            if rule is not None and rule[0](value):
                raise ProducerConfigError(f"producer_config {key}={value!r} is refused: {rule[1]}; remove the key.")
    return config


def _check_kafka_python_values(config: Mapping[str, Any]) -> None:
    """Values kafka-python checks only after connecting to the brokers (a mistake would look like an outage)."""
    from kafka import KafkaProducer

    compressors = getattr(KafkaProducer, "_COMPRESSORS", None)  # {codec: (library available?, attributes)}
    if "compression_type" not in config or not isinstance(compressors, Mapping):
        return
    codec = config["compression_type"]
    if codec not in compressors:
        names = ", ".join(sorted(str(c) for c in compressors if c is not None))
        raise ProducerConfigError(f"producer_config compression_type={codec!r} is not a codec kafka-python knows; "
                                  f"use one of {names} or None.")
    check = compressors[codec][0]
    if callable(check) and not check():
        raise ProducerConfigError(f"producer_config compression_type={codec!r} needs a compression library that is "
                                  "not installed; install it (e.g. `pip install kafka-python[{codec}]`) or use gzip.")


def _suggestion(key: object, known: frozenset[str], client: str) -> str:
    text = str(key)
    other = text.replace(".", "_") if client == "kafka-python" else text.replace("_", ".")
    close = [other] if other in known else difflib.get_close_matches(text, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    hint = "linger_ms" if client == "kafka-python" else "linger.ms"
    return f"use the client's own names, such as {hint!r} (PIPELINE_PRODUCER_CLIENT chooses the client)."


def _false(value: Any) -> bool:
    return value is False or str(value).strip().lower() in ("false", "0", "no", "off")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None  # not a number: the client itself refuses it, reported as a configuration error


def _not_all(value: Any) -> bool:
    return str(value).strip().lower() not in ("all", "-1")


def _zero(value: Any) -> bool:
    return _int(value) == 0


def _more_than_max_in_flight(value: Any) -> bool:
    number = _int(value)
    return number is not None and number > MAX_IN_FLIGHT


def _nonzero(value: Any) -> bool:
    number = _int(value)
    return number is None or number != 0


Rule = tuple[Callable[[Any], bool], str]

_KAFKA_PYTHON_RULES: dict[str, Rule] = {
    "acks": (_not_all, _ACKS),
    "enable_idempotence": (_false, _IDEMPOTENCE),
    "retries": (_zero, _RETRIES),
    "max_in_flight_requests_per_connection": (_more_than_max_in_flight, _IN_FLIGHT),
}

_CONFLUENT_RULES: dict[str, Rule] = {
    "acks": (_not_all, _ACKS),
    "request.required.acks": (_not_all, _ACKS),
    "enable.idempotence": (_false, _IDEMPOTENCE),
    "enable.gapless.guarantee": (_false, _GAPLESS),
    "message.timeout.ms": (_nonzero, _TIMEOUT),
    "delivery.timeout.ms": (_nonzero, _TIMEOUT),
    "retries": (_zero, _RETRIES),
    "message.send.max.retries": (_zero, _RETRIES),
    "max.in.flight": (_more_than_max_in_flight, _IN_FLIGHT),
    "max.in.flight.requests.per.connection": (_more_than_max_in_flight, _IN_FLIGHT),
}
