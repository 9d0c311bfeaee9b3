"""The producer's record handling without a broker: exact bytes, the parse contract, oversized records, positions."""
from __future__ import annotations

import orjson
import pytest
from kafka.errors import MessageSizeTooLargeError

from framework.errors import StreamError
from framework.producer.base import DLQ_PREFIX_BYTES, PRODUCERS, ProducerABC
from framework.records import RecordError, parse_record, split_position
from framework.settings import Settings
from framework.testing.producer import FakeNdjsonSession, InMemoryKafka

BIG = b'{"time":"2026-01-05T06:00:00Z","id":1,"amount":12345678901234567890.12,"n":123456789012345678901234567890}'


class ExactProducer(ProducerABC):
    name = "unit-exact"
    endpoint = "/stream_data_unit"
    topic = "unit-exact"
    key_field = "id"
    partitions = 1


class RenamingProducer(ProducerABC):
    name = "unit-renaming"
    endpoint = "/stream_data_unit"
    topic = "unit-renaming"
    partitions = 1

    def transform(self, record: dict) -> dict | None:
        return {"renamed": record["id"]}


@pytest.fixture(scope="module", autouse=True)
def _unregister():
    yield
    for name in ("unit-exact", "unit-renaming"):
        PRODUCERS.unregister(name)


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env(producer_retries=2, producer_retry_backoff=0.001, api_base_url="http://api.test")


def run(cls, settings, session, kafka, **kwargs):
    return cls(settings, session=session, **kafka.clients(), **kwargs).run()


# ------------------------------------------------------------------ bytes
@pytest.mark.parametrize("line, position, value", [
    (b'{"_position":7,"id":1}', 7, b'{"id":1}'),
    (b'{"_position":7}', 7, b"{}"),
    (b'{"a":1,"_position":7}', 7, b'{"a":1}'),
    (b'{"_position" : 7 , "a":{"_position":3}}', 7, b'{ "a":{"_position":3}}'),
    (b'{"a":"x\\"_position","_position":2,"c":3}', 2, b'{"a":"x\\"_position","c":3}'),
    (b'{"a":{"_position":3},"b":[1,"_position"]}', None, b'{"a":{"_position":3},"b":[1,"_position"]}'),
    (b'{"_position":"x","a":1}', None, b'{"_position":"x","a":1}'),
    (b'[{"_position":1}]', None, b'[{"_position":1}]'),
    (b"not json _position", None, b"not json _position"),
    (b'{"_position":5,' + BIG[1:], 5, BIG),
])
def test_split_position_cuts_only_the_member(line, position, value):
    assert split_position(line) == (position, value)


def test_parse_record_follows_the_contract():
    assert parse_record(b' \t{"a":1}\r\n') == {"a": 1}
    assert parse_record(b'{"n":123456789012345678901234567890,"x":1e400}')["n"] == 123456789012345678901234567890
    for bad, reason in [(b"[1]", "JSON array"), (b'{"a":1} {"b":2}', "not valid JSON"), (b'{"a":NaN}', "not valid"),
                        (b'{"a":"\xff"}', "not valid"), (b"\xef\xbb\xbf{}", "not valid"), (b"", "not valid"),
                        (b'{"a":1}\x0c', "not valid"), (b'{"n":1e400,"x":Infinity}', "not valid"),
                        (b'"text"', "JSON string")]:
        with pytest.raises(RecordError, match=reason):
            parse_record(bad)


def test_records_pass_through_byte_for_byte(settings):
    kafka = InMemoryKafka()
    lines = [b'{"_position":0,' + BIG[1:], b'{"_position":1,"id":2, "val" : 1.50e0 ,"s":"\\u00e9"}']
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines), kafka)
    assert summary.sent == 2
    values = [m.value for m in kafka.messages("unit-exact")]
    assert values == [BIG, b'{"id":2, "val" : 1.50e0 ,"s":"\\u00e9"}']
    assert b"12345678901234567890.12" in values[0] and b"123456789012345678901234567890" in values[0]


def test_a_transform_override_re_encodes(settings):
    kafka = InMemoryKafka()
    run(RenamingProducer, settings, FakeNdjsonSession(lines=[b'{"_position":0,"id": 3}']), kafka)
    assert [m.value for m in kafka.messages("unit-renaming")] == [b'{"renamed":3}']


def test_values_the_consumer_would_quarantine_are_dead_lettered(settings):
    kafka = InMemoryKafka()
    lines = [b'{"_position":0,"id":1} {"id":2}', b'{"_position":1,"id":1,"v":NaN}', b'{"_position":2,"id":1}']
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines), kafka)
    assert (summary.sent, summary.dead_lettered) == (1, 2)
    dlq = kafka.messages("unit-exact.dlq")
    assert [m.value for m in dlq] == [b'{"id":1} {"id":2}', b'{"id":1,"v":NaN}']
    assert all(m.header("dlq-reason").startswith(b"the line is not valid JSON") for m in dlq)


# ------------------------------------------------------------------ oversized records
def oversized_lines(big_at: int = 5, n: int = 11, size: int = 5000) -> list[bytes]:
    return [orjson.dumps({"_position": i, "id": i, "s": "x" * (size if i == big_at else 3)}) for i in range(n)]


def test_an_oversized_record_is_dead_lettered_and_production_continues(settings):
    kafka = InMemoryKafka()
    lines = oversized_lines()
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines), kafka,
                  producer_config={"max_request_size": 4096})
    assert (summary.sent, summary.dead_lettered) == (10, 1)
    assert [m.position for m in kafka.messages("unit-exact")] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    (dead,) = kafka.messages("unit-exact.dlq")
    assert dead.position == 5 and dead.key == b"5" and dead.header("source-key") == b"5"
    assert b"over the" in dead.header("dlq-reason") and b"bytes" in dead.header("dlq-reason")
    record = split_position(lines[5])[1]  # the DLQ takes 4096 bytes too (the client's limit): a prefix is kept
    assert record.startswith(dead.value) and 3000 < len(dead.value) < 4096 - len(dead.header("dlq-reason"))
    assert dead.header("dlq-value-bytes") == b"%d" % len(record) and dead.header("dlq-truncated") == b"true"
    again = run(ExactProducer, settings, FakeNdjsonSession(lines=lines), kafka,
                producer_config={"max_request_size": 4096})
    assert (again.sent, again.dead_lettered) == (0, 0)
    assert len(kafka.messages("unit-exact")) == 10 and len(kafka.messages("unit-exact.dlq")) == 1


def test_a_dead_letter_keeps_a_prefix_when_the_record_does_not_fit_the_dlq(settings, mocker):
    kafka = InMemoryKafka()
    lines = oversized_lines(size=2 * 1024 * 1024)
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines), kafka)
    assert (summary.sent, summary.dead_lettered) == (10, 1)
    (dead,) = kafka.messages("unit-exact.dlq")
    record = split_position(lines[5])[1]
    assert dead.value == record[:DLQ_PREFIX_BYTES] and dead.value.startswith(b'{"id":5,')
    assert dead.header("dlq-value-bytes") == b"%d" % len(record) and dead.header("dlq-truncated") == b"true"


def test_a_record_the_broker_refuses_as_too_large_is_dead_lettered_on_the_next_session(settings):
    kafka = InMemoryKafka()

    def refuse(message):
        if message.topic == "unit-exact" and len(message.value) > 1000:
            return MessageSizeTooLargeError("The message is 5030 bytes when serialized (broker)")
        return None

    summary = ExactProducer(settings, session=FakeNdjsonSession(lines=oversized_lines()),
                            **kafka.clients(fail=refuse)).run()
    assert (summary.sent, summary.dead_lettered, summary.retries) == (10, 1, 1)
    assert [m.position for m in kafka.messages("unit-exact")] == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    (dead,) = kafka.messages("unit-exact.dlq")
    assert dead.position == 5 and b"refused the record as too large" in dead.header("dlq-reason")


def test_a_record_the_client_refuses_at_send_is_dead_lettered(settings, mocker):
    kafka = InMemoryKafka()
    producer = kafka.producer()
    real_send = producer.send

    def send(topic, value=None, **kwargs):
        if topic == "unit-exact" and len(value) > 1000:
            raise MessageSizeTooLargeError("The message is 5030 bytes when serialized")
        return real_send(topic, value=value, **kwargs)

    mocker.patch.object(producer, "send", side_effect=send)
    clients = kafka.clients()
    clients.pop("producer_factory")
    summary = ExactProducer(settings, session=FakeNdjsonSession(lines=oversized_lines()), producer=producer,
                            **clients).run()
    assert (summary.sent, summary.dead_lettered, summary.retries) == (10, 1, 0)
    assert b"MessageSizeTooLargeError" in kafka.messages("unit-exact.dlq")[0].header("dlq-reason")


# ------------------------------------------------------------------ servers that ignore from
def test_a_static_server_gives_each_record_once_over_runs(settings):
    kafka = InMemoryKafka()
    lines = [orjson.dumps({"id": i, "v": i}) for i in range(3)]
    for _ in range(3):
        session = FakeNdjsonSession(lines=lines, ignore_from=True)
        run(ExactProducer, settings, session, kafka)
    assert [m.value for m in kafka.messages("unit-exact")] == lines
    lines.append(b'{"id":3,"v":3}')  # the file grows: only the new line is sent
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines, ignore_from=True), kafka)
    assert summary.sent == 1
    assert [m.position for m in kafka.messages("unit-exact")] == [0, 1, 2, 3]


def test_a_server_that_honours_from_silently_is_read_from_the_beginning(settings):
    kafka = InMemoryKafka()
    lines = [orjson.dumps({"id": i}) for i in range(4)]
    run(ExactProducer, settings, FakeNdjsonSession(lines=lines[:2]), kafka)
    session = FakeNdjsonSession(lines=lines)  # honours from, states nothing
    assert run(ExactProducer, settings, session, kafka).sent == 2
    asked = [r["from"] for r in session.requests]
    assert asked[0] > 0 and set(asked[1:]) == {0}  # no position stated: asked again from the beginning
    assert [m.value for m in kafka.messages("unit-exact")] == lines


def test_positions_before_from_are_skipped_and_a_later_start_fails(settings):
    kafka = InMemoryKafka()
    lines = [orjson.dumps({"_position": i, "id": i}) for i in range(3)]
    run(ExactProducer, settings, FakeNdjsonSession(lines=lines[:2]), kafka)
    summary = run(ExactProducer, settings, FakeNdjsonSession(lines=lines, ignore_from=True), kafka)
    assert summary.sent == 1 and len(kafka.messages("unit-exact")) == 3

    class Skipping(FakeNdjsonSession):
        def get(self, url, params=None, **kwargs):
            response = super().get(url, params, **kwargs)
            response.headers["X-Stream-From"] = str(int(params["from"]) + 5)
            return response

    with pytest.raises(StreamError, match=r"answered from position (\d+) \(X-Stream-From header\), skipping positions"):
        run(ExactProducer, settings, Skipping(lines=[b'{"id":1}'] * 10), kafka)
