"""producer_config is checked before any I/O: unknown keys, keys that break exactly-once, the client's own refusal."""
from __future__ import annotations

import socket

import pytest
from kafka.errors import KafkaConfigurationError

from framework.errors import ProducerConfigError
from framework.producer import ProducerABC
from framework.producer.base import PRODUCERS
from framework.producer.clients import KafkaFailure, ProducerClients
from framework.producer.config import check_producer_config, known_keys
from framework.settings import Settings
from framework.testing.producer import FakeNdjsonSession, InMemoryKafka


class ConfigProbe(ProducerABC):
    name = "unit-config-probe"
    endpoint = "/stream_data_x"
    topic = "unit-config-probe"


@pytest.fixture(scope="module", autouse=True)
def _unregister():
    yield
    PRODUCERS.unregister("unit-config-probe")


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the checks must run before any I/O."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def settings(client: str = "kafka-python") -> Settings:
    return Settings.from_env({}).replace(kafka_bootstrap_servers="127.0.0.1:1", producer_client=client)


def one_sentence(message: str) -> bool:
    return "\n" not in message and message[-1] in ".?" and message.count(". ") == 0


# ---------------------------------------------------------------------- the two examples
def test_acks_1_fails_at_construction_in_one_sentence(no_network):
    factory_calls = []
    with pytest.raises(ProducerConfigError) as info:
        ConfigProbe(settings(), producer_config={"acks": 1}, producer_factory=lambda: factory_calls.append(1))
    assert str(info.value).startswith("producer_config acks=1 is refused: the exactly-once contract needs acks=all")
    assert str(info.value).endswith("; remove the key.") and one_sentence(str(info.value))
    assert factory_calls == []


def test_a_typo_fails_at_construction_with_did_you_mean(no_network):
    with pytest.raises(ProducerConfigError) as info:
        ConfigProbe(settings(), producer_config={"linger": 5})
    assert str(info.value) == ("producer_config key 'linger' is not a kafka-python KafkaProducer argument; "
                               "did you mean 'linger_ms'?")
    assert one_sentence(str(info.value))


def test_the_same_examples_with_librdkafka(no_network):
    with pytest.raises(ProducerConfigError, match=r"^producer_config key 'linger' is not a librdkafka producer "
                                                  r"property; did you mean 'linger.ms'\?$"):
        ConfigProbe(settings("confluent"), producer_config={"linger": 5})
    with pytest.raises(ProducerConfigError, match=r"^producer_config acks=1 is refused: the exactly-once"):
        ConfigProbe(settings("confluent"), producer_config={"acks": 1})


# ---------------------------------------------------------------------- the kind
@pytest.mark.parametrize("client, key, suggestion", [
    ("kafka-python", "linger.ms", "linger_ms"),          # the other client's spelling
    ("kafka-python", "batchsize", "batch_size"),
    ("kafka-python", "compresion_type", "compression_type"),
    ("confluent", "linger_ms", "linger.ms"),
    ("confluent", "batch_size", "batch.size"),
    ("confluent", "queue.buffering.max.msgs", "queue.buffering.max.ms"),
])
def test_unknown_keys_are_refused_with_a_suggestion(client, key, suggestion):
    with pytest.raises(ProducerConfigError, match=rf"key {key!r} is not a .*; did you mean {suggestion!r}\?$"):
        check_producer_config({key: 1}, client)


def test_an_unknown_key_without_a_close_name_says_which_names_to_use():
    with pytest.raises(ProducerConfigError, match=r"key 'zzz' is not a kafka-python KafkaProducer argument; use "
                                                  r"the client's own names, such as 'linger_ms'"):
        check_producer_config({"zzz": 1})


@pytest.mark.parametrize("client, config, reason", [
    ("kafka-python", {"acks": 0}, "needs acks=all"),
    ("kafka-python", {"acks": "1"}, "needs acks=all"),
    ("kafka-python", {"enable_idempotence": False}, "idempotence is what keeps"),
    ("kafka-python", {"retries": 0}, "with no retries"),
    ("kafka-python", {"max_in_flight_requests_per_connection": 6}, "at most 5 requests in flight"),
    ("confluent", {"acks": "1"}, "needs acks=all"),
    ("confluent", {"request.required.acks": 0}, "needs acks=all"),
    ("confluent", {"enable.idempotence": "false"}, "idempotence is what keeps"),
    ("confluent", {"enable.gapless.guarantee": False}, "gapless guarantee"),
    ("confluent", {"message.timeout.ms": 30000}, "local delivery timeout"),
    ("confluent", {"delivery.timeout.ms": 1000}, "local delivery timeout"),
    ("confluent", {"retries": 0}, "with no retries"),
    ("confluent", {"message.send.max.retries": "0"}, "with no retries"),
    ("confluent", {"max.in.flight": 10}, "at most 5 requests in flight"),
    ("confluent", {"max.in.flight.requests.per.connection": 6}, "at most 5 requests in flight"),
])
def test_keys_that_break_exactly_once_are_refused_with_the_reason(client, config, reason):
    with pytest.raises(ProducerConfigError) as info:
        check_producer_config(config, client)
    key, value = next(iter(config.items()))
    assert str(info.value).startswith(f"producer_config {key}={value!r} is refused: ")
    assert reason in str(info.value) and one_sentence(str(info.value))
    assert check_producer_config(config, client, exactly_once=False) == config  # a benchmark may measure it


@pytest.mark.parametrize("client, config", [
    ("kafka-python", {"acks": -1, "enable_idempotence": True, "retries": 5,
                      "max_in_flight_requests_per_connection": 5, "linger_ms": 5, "batch_size": 65536}),
    ("kafka-python", {"acks": "all", "compression_type": "gzip"}),
    ("confluent", {"acks": "all", "enable.idempotence": "true", "message.timeout.ms": 0, "linger.ms": 5,
                   "max.in.flight": 5, "compression.type": "zstd", "batch.num.messages": 1000}),
])
def test_settings_that_keep_the_contract_pass(client, config):
    assert check_producer_config(config, client) == config


def test_kafka_python_names_come_from_the_installed_library():
    from kafka import KafkaProducer

    assert known_keys("kafka-python") >= set(KafkaProducer.DEFAULT_CONFIG)
    assert {"linger.ms", "enable.idempotence", "bootstrap.servers"} <= known_keys("confluent")


# ---------------------------------------------------------------------- the client's own refusal
def test_values_kafka_python_checks_only_after_connecting_are_checked_first(no_network):
    with pytest.raises(ProducerConfigError, match=r"^producer_config compression_type='nope' is not a codec "
                                                  r"kafka-python knows; use one of gzip, lz4, snappy, zstd or None\.$"):
        ProducerClients(settings(), "unit", producer_config={"compression_type": "nope"})


@pytest.mark.parametrize("refusal", [KafkaConfigurationError("Cannot set transactional_id without enable_idempotence."),
                                     ValueError("Not supported codec: nope")])
def test_kafka_pythons_own_refusal_is_a_configuration_error_not_a_kafka_failure(refusal, mocker):
    mocker.patch("kafka.KafkaProducer", side_effect=refusal)
    clients = ProducerClients(settings(), "unit")
    with pytest.raises(ProducerConfigError, match=rf"^The Kafka producer of 'unit' cannot be created: {refusal}"):
        clients.producer()


def test_librdkafkas_own_refusal_is_a_configuration_error_not_retried(no_network):
    clients = ProducerClients(settings("confluent"), "unit", producer_config={"linger.ms": "soon"}, client="confluent")
    with pytest.raises(ProducerConfigError, match=r"cannot be created: .*linger\.ms"):
        clients.producer()


def test_a_configuration_error_ends_the_run_at_once(mocker):
    kafka = InMemoryKafka()
    clients = kafka.clients()
    factory = mocker.Mock(side_effect=ProducerConfigError("The client refused its configuration."))
    clients["producer_factory"] = factory
    producer = ConfigProbe(settings(), session=FakeNdjsonSession([{"id": 1}]), **clients)
    backoff = mocker.patch.object(producer._stop, "wait")
    with pytest.raises(ProducerConfigError, match="refused its configuration"):
        producer.run()
    assert factory.call_count == 1 and backoff.call_count == 0  # no retry, no backoff
    assert not issubclass(ProducerConfigError, KafkaFailure)
