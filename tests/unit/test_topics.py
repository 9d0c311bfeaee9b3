"""One topic-name check (Kafka's Topic.validate) for the admin, the producer and the consumer declarations."""
from __future__ import annotations

import pytest

from framework.admin import KafkaAdmin
from framework.errors import DeclarationError, TopicError
from framework.producer import ProducerABC
from framework.producer.base import PRODUCERS
from framework.topics import MAX_TOPIC_NAME_LENGTH, check_topic_name, topic_name_problem
from framework.consumer.base import CONSUMERS
from tests.unit.test_consumer import declare

LEGAL = ["a", "metrics", "metrics.dlq", "a_b-c.1", "A" * 249, "..."]
ILLEGAL = {
    "": "is empty",
    ".": "is '.' or '..'",
    "..": "is '.' or '..'",
    "has space": "contains ' '",
    "métrics": "contains 'é'",
    "a/b:c": "contains '/', ':'",
    "a" * 250: "has 250 characters, more than 249",
}


@pytest.fixture(autouse=True)
def _unregister():
    yield
    PRODUCERS.unregister("topic-probe")
    CONSUMERS.unregister("unit-consumer")


def test_kafkas_limit():
    assert MAX_TOPIC_NAME_LENGTH == 249


@pytest.mark.parametrize("name", LEGAL)
def test_legal_names(name):
    assert topic_name_problem(name) is None
    assert check_topic_name(name) == name


@pytest.mark.parametrize("name, problem", ILLEGAL.items())
def test_illegal_names_say_why(name, problem):
    assert problem in (topic_name_problem(name) or "")
    with pytest.raises(TopicError, match=r"^Topic name .* is not valid: it .*\.$"):
        check_topic_name(name)


def test_not_a_string():
    assert topic_name_problem(None) == "is a NoneType, not a string"


def test_admin_refuses_before_connecting(mocker):
    client = mocker.Mock()
    admin = KafkaAdmin(bootstrap_servers="127.0.0.1:1", client=client)
    with pytest.raises(TopicError, match="Topic name 'has space' is not valid: it contains ' '"):
        admin.create_topic("has space", partitions=1)
    assert client.mock_calls == []


def _producer(topic: str) -> type:
    return type("TopicProbe", (ProducerABC,), {"name": "topic-probe", "endpoint": "/x", "topic": topic})


@pytest.mark.parametrize("name, problem", ILLEGAL.items())
def test_producer_and_consumer_refuse_the_same_names(name, problem):
    expected = r"must be a non-empty string" if name == "" else rf"is not a valid Kafka topic name: it {problem}"
    with pytest.raises(DeclarationError, match=r"TopicProbe\.topic .*" + expected.replace("(", r"\(")):
        _producer(name)
    with pytest.raises(DeclarationError, match=r"UnitConsumer\.topics contains .* not a valid Kafka topic name: it "):
        declare(topics=[name])


def test_producer_leaves_room_for_its_dead_letter_topic():
    assert _producer("p" * 245)(None).dlq_topic == "p" * 245 + ".dlq"  # 249 characters
    with pytest.raises(DeclarationError, match=r"has 246 characters, more than 245 \(its dead-letter topic "
                                               r"'<topic>\.dlq' must fit in Kafka's 249\)"):
        _producer("p" * 246)


def test_consumer_takes_the_full_length():
    declare(topics=["c" * 249])
