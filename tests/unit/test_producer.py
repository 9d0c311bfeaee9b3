"""ProducerABC without a broker: declaration, keys, partitions, headers, DLQ, resume, reconnects."""
from __future__ import annotations

import os
import random
import signal
import threading

import orjson
import pytest
import requests

from framework.commands.produce import main as produce_main
from framework.commands.produce import run_producers
from framework.errors import DeclarationError, ProducerError, RegistryError, StreamError
from framework.sources.http import line_position
from framework.producer.partitioning import Partitioner, partition_for_key
from framework.producer.base import PRODUCERS, ProducerABC
from framework.producer.resume import ResumeState
from framework.settings import Settings
from framework.testing.producer import FakeNdjsonSession, InMemoryKafka, RecordingProducer


class KeyedProducer(ProducerABC):
    name = "unit-keyed"
    endpoint = "/stream_data_unit"
    topic = "unit-keyed"
    key_field = "id"


class KeylessProducer(ProducerABC):
    name = "unit-keyless"
    endpoint = "http://example.invalid/feed"
    topic = "unit-keyless"
    partitions = 4


class ScalingProducer(ProducerABC):
    """Drops negative values, doubles the others, fails on val == 13."""

    name = "unit-scaling"
    endpoint = "/stream_data_unit"
    topic = "unit-scaling"
    key_field = "id"

    def transform(self, record: dict) -> dict | None:
        if record["val"] == 13:
            raise ValueError("unlucky value")
        if record["val"] < 0:
            return None
        return {**record, "val": record["val"] * 2}


@pytest.fixture(scope="module", autouse=True)
def _unregister():
    yield
    for name in ("unit-keyed", "unit-keyless", "unit-scaling"):
        PRODUCERS.unregister(name)


@pytest.fixture
def settings() -> Settings:  # overrides the broker-backed fixture: no broker in unit tests
    return Settings.from_env(producer_retries=2, producer_retry_backoff=0.001, api_base_url="http://api.test")


def records(n: int, keys: int = 5) -> list[dict]:
    return [{"id": i % keys, "time": f"2026-01-05T06:00:{i % 60:02d}.000Z", "val": float(i)} for i in range(n)]


def run(cls, settings, session, kafka, **kwargs):
    return cls(settings, session=session, **kafka.clients(), **kwargs).run()


def positions_in(kafka: InMemoryKafka, topic: str) -> list[int]:
    return sorted(m.position for m in kafka.messages(topic))


# ------------------------------------------------------------------ declaration
def test_missing_topic_fails_at_import_naming_class_and_attribute():
    with pytest.raises(DeclarationError, match=r"NoTopic\.topic is missing"):
        class NoTopic(ProducerABC):
            name = "no-topic"
            endpoint = "/stream_data_x"


@pytest.mark.parametrize("attrs, match", [
    ({"key_field": 5}, r"Bad\.key_field must be a field name"),
    ({"key_field": ""}, r"Bad\.key_field"),
    ({"partitions": 0}, r"Bad\.partitions must be a whole number"),
    ({"partitions": True}, r"Bad\.partitions"),
    ({"endpoint": "stream_data_x"}, r"Bad\.endpoint .* must be a path starting with '/'"),
    ({"topic": "has space"}, r"Bad\.topic .* not a valid Kafka topic name"),
    ({"name": 3}, r"Bad\.name must be a non-empty string"),
    ({"run": lambda self: None}, r"Bad overrides run"),
])
def test_wrong_attributes_fail_at_import(attrs, match):
    base = {"name": "bad", "endpoint": "/stream_data_x", "topic": "bad"}
    with pytest.raises(DeclarationError, match=match):
        type("Bad", (ProducerABC,), {**base, **attrs})
    assert "bad" not in PRODUCERS


def test_abstract_subclasses_are_neither_checked_nor_registered():
    class Base(ProducerABC):
        abstract = True
        endpoint = "/stream_data_common"

    class Concrete(Base):
        name = "unit-concrete"
        topic = "unit-concrete"

    try:
        assert PRODUCERS.get("unit-concrete") is Concrete
        assert Concrete.endpoint == "/stream_data_common"
    finally:
        PRODUCERS.unregister("unit-concrete")


def test_registration_and_unknown_name():
    assert PRODUCERS.get("unit-keyed") is KeyedProducer
    with pytest.raises(RegistryError, match=r"Unknown producer 'unit-keyd'; available: .*unit-keyed"):
        PRODUCERS.get("unit-keyd")


def test_two_classes_with_one_name_are_refused():
    with pytest.raises(RegistryError, match="Two producers are named 'unit-keyed'"):
        type("Other", (ProducerABC,), {"name": "unit-keyed", "endpoint": "/x", "topic": "other"})


def test_no_io_in_init(settings):
    producer = KeyedProducer(settings)  # no broker, no API: must not fail
    assert producer.url == "http://api.test/stream_data_unit"
    assert KeylessProducer(settings).url == "http://example.invalid/feed"
    assert producer.dlq_topic == "unit-keyed.dlq"


# ------------------------------------------------------------------ partitions
class _Cluster:
    def __init__(self, n):
        self.n = n

    def topics(self):
        return {"t"}

    def partitions_for_topic(self, topic):
        return set(range(self.n))

    def available_partitions_for_topic(self, topic):
        return set(range(self.n))


@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_key_partition_matches_kafka_python_default_partitioner(n):
    from kafka.partitioner.default import DefaultPartitioner

    default = DefaultPartitioner()
    for key in [b"0", b"1", b"4", b"24", b"product-7", "é".encode(), b"", b"a much longer key of 37 bytes......"]:
        expected = default.partition("t", key, key, b"v", b"v", _Cluster(n))
        assert partition_for_key(key, n) == expected
        assert Partitioner(n)(key, 99) == expected


def test_keys_partitions_values_and_headers(settings):
    kafka, data = InMemoryKafka(), records(20)
    summary = run(KeyedProducer, settings, FakeNdjsonSession(data), kafka)
    assert (summary.sent, summary.dead_lettered, summary.first_position, summary.last_position) == (20, 0, 0, 19)
    messages = sorted(kafka.messages("unit-keyed"), key=lambda m: m.position)
    assert [m.json() for m in messages] == data  # _position stripped, nothing else changed
    for m in messages:
        assert m.key == str(m.json()["id"]).encode()
        assert m.partition == partition_for_key(m.key, 3)
        assert m.value == orjson.dumps(m.json())  # compact JSON
        assert int(m.header("source-watermark")) < m.position
    by_key: dict[bytes, set] = {}
    for m in messages:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    assert kafka.topics == {"unit-keyed": 3, "unit-keyed.dlq": 1}


def test_keyless_records_round_robin_by_position(settings):
    kafka = InMemoryKafka()
    run(KeylessProducer, settings, FakeNdjsonSession(records(10)), kafka)
    assert kafka.topics["unit-keyless"] == 4  # the declared partition count
    for m in kafka.messages("unit-keyless"):
        assert m.key is None and m.partition == m.position % 4


def test_generic_ndjson_without_positions(settings):
    kafka = InMemoryKafka()
    lines = [orjson.dumps(r) for r in records(6)]
    session = FakeNdjsonSession(lines=lines, breaks=[2])
    run(KeyedProducer, settings, session, kafka)
    assert positions_in(kafka, "unit-keyed") == list(range(6))
    # no position stated: after the break the stream is read from 0 again and 0..1 are skipped here
    assert [r["from"] for r in session.requests] == [0, 0]


def test_generic_ndjson_stating_its_first_position_resumes_from_there(settings):
    kafka = InMemoryKafka()
    lines = [orjson.dumps(r) for r in records(6)]
    session = FakeNdjsonSession(lines=lines, breaks=[2], from_header=True)
    run(KeyedProducer, settings, session, kafka)
    assert positions_in(kafka, "unit-keyed") == list(range(6))
    assert [r["from"] for r in session.requests] == [0, 2]


# ------------------------------------------------------------------ transform, DLQ
def test_transform_changes_and_drops_and_its_errors_are_dead_lettered(settings):
    kafka = InMemoryKafka()
    data = [{"id": 1, "val": 2.0}, {"id": 2, "val": -1.0}, {"id": 3, "val": 13}, {"id": 4, "val": 5.0}]
    summary = run(ScalingProducer, settings, FakeNdjsonSession(data), kafka)
    assert (summary.sent, summary.dropped, summary.dead_lettered) == (2, 1, 1)
    assert sorted(m.json()["val"] for m in kafka.messages("unit-scaling")) == [4.0, 10.0]
    (dlq,) = kafka.messages("unit-scaling.dlq")
    assert dlq.header("dlq-reason") == b"transform() raised ValueError: unlucky value"
    assert dlq.position == 2


def test_bad_lines_go_to_the_dead_letter_topic_with_reasons(settings):
    kafka = InMemoryKafka()
    lines = [b'{"_position":0,"id":1,"val":1.0}', b'{"_position":1,"id":2,', b'[1, 2]',
             b'{"_position":3,"val":3.0}', b'{"_position":4,"id":null}', b'not json at all',
             b'{"_position":6,"id":7,"val":6.0}']
    summary = run(KeyedProducer, settings, FakeNdjsonSession(lines=lines), kafka)
    assert (summary.sent, summary.dead_lettered) == (2, 5)
    assert positions_in(kafka, "unit-keyed") == [0, 6]
    dlq = {m.position: m for m in kafka.messages("unit-keyed.dlq")}
    assert sorted(dlq) == [1, 2, 3, 4, 5]
    assert dlq[1].header("dlq-reason").startswith(b"the line is not valid JSON")
    assert dlq[2].header("dlq-reason") == b"the line is a JSON array, not an object"
    assert dlq[3].header("dlq-reason") == b"the record has no 'id' field, the key of topic 'unit-keyed'"
    assert dlq[4].header("dlq-reason").startswith(b"the record has no 'id' field")
    assert dlq[5].value == b"not json at all"  # raw bytes, as received
    assert all(m.header("source-topic") == b"unit-keyed" for m in dlq.values())
    # a second run sends nothing again, neither to the topic nor to the DLQ
    again = run(KeyedProducer, settings, FakeNdjsonSession(lines=lines), kafka)
    assert (again.sent, again.dead_lettered, again.skipped_existing) == (0, 0, 1)  # only 6 is read again
    assert len(kafka.messages("unit-keyed.dlq")) == 5


# ------------------------------------------------------------------ resume
def test_resume_state_start_position():
    state = ResumeState({("t", 0): 101, ("t", 1): 99, ("t.dlq", 0): -1}, watermark=97)
    assert state.start_position == 98  # the watermark beats the empty DLQ
    assert ResumeState({("t", 0): 101, ("t", 1): 99}, watermark=-1).start_position == 100  # min, not max
    assert state.already_written(("t", 0), 101) and not state.already_written(("t", 1), 100)
    assert ResumeState().start_position == 0


def crashed_run(settings, data, keep) -> InMemoryKafka:
    """A first run whose acknowledgements lagged (watermark -1), then cut per partition by ``keep(tp, log)``."""
    kafka = InMemoryKafka()
    KeyedProducer(settings, session=FakeNdjsonSession(data), **kafka.clients(auto_ack=False)).run()
    for tp, log in kafka.logs.items():
        kafka.logs[tp] = keep(tp, log)
    return kafka


def test_resume_skips_exactly_what_each_partition_holds(settings):
    """Partition A already has 101 but B lost 100: 100 is sent again, nothing twice."""
    data = records(120, keys=2)
    a, b = partition_for_key(b"1", 3), partition_for_key(b"0", 3)  # 101 has id 1, 100 has id 0
    assert a != b
    cut = {("unit-keyed", a): 101, ("unit-keyed", b): 98}
    kafka = crashed_run(settings, data, lambda tp, log: [m for m in log if m.position <= cut.get(tp, 10**9)])
    present = set(positions_in(kafka, "unit-keyed"))
    assert 101 in present and 100 not in present
    summary = run(KeyedProducer, settings, FakeNdjsonSession(data), kafka)
    assert positions_in(kafka, "unit-keyed") == list(range(120))
    assert summary.sent == 120 - len(present)


def test_resume_state_is_read_per_partition(settings):
    from framework.producer.resume import read_resume_state
    from framework.testing.producer import FakeConsumer

    data = records(60, keys=3)
    kafka = crashed_run(settings, data, lambda tp, log: log[: len(log) // 2])
    state = read_resume_state(lambda: FakeConsumer(kafka), {"unit-keyed": 3, "unit-keyed.dlq": 1})
    for p in range(3):
        log = kafka.logs.get(("unit-keyed", p), [])
        assert state.high_water[("unit-keyed", p)] == (log[-1].position if log else -1)
    assert state.high_water[("unit-keyed.dlq", 0)] == -1 and state.watermark == -1


def test_resume_after_any_crash_prefix_is_exactly_once(settings):
    """Every per-partition prefix is a possible SIGKILL state; a restart completes it exactly once."""
    data = records(200, keys=7)
    rng = random.Random(4)
    for _ in range(25):
        kafka = crashed_run(settings, data, lambda tp, log: log[:rng.randint(0, len(log))])
        before = len(kafka.messages("unit-keyed"))
        summary = run(KeyedProducer, settings, FakeNdjsonSession(data), kafka)
        assert positions_in(kafka, "unit-keyed") == list(range(200))
        assert summary.sent == 200 - before


def test_second_run_sends_nothing_and_starts_at_the_end(settings):
    kafka, data = InMemoryKafka(), records(30)
    run(KeyedProducer, settings, FakeNdjsonSession(data), kafka)
    session = FakeNdjsonSession(data)
    summary = run(KeyedProducer, settings, session, kafka)
    # The last record's watermark says 28 was acknowledged: only 29 is read again (and skipped), no replay from 0.
    assert session.requests[0]["from"] == 29 and (summary.sent, summary.skipped_existing) == (0, 1)


def test_restart_catches_up_without_pacing_then_paces_again(settings):
    """Positions Kafka may already hold are asked for with delay=0, the rest with the asked delay."""
    data = records(50, keys=3)
    kafka = crashed_run(settings, data, lambda tp, log: log[: len(log) // 2])
    highest = max(m.position for m in kafka.messages("unit-keyed"))
    session = FakeNdjsonSession(data)
    summary = run(KeyedProducer, settings, session, kafka, delay=0.5)
    assert session.requests == [{"from": 0, "delay": 0}, {"from": highest + 1, "delay": 0.5}]
    assert positions_in(kafka, "unit-keyed") == list(range(50)) and summary.reconnects == 0


# ------------------------------------------------------------------ failures
def test_stream_break_reconnects_from_the_next_position(settings):
    kafka = InMemoryKafka()
    session = FakeNdjsonSession(records(12), breaks=[3, 0, 4], refuse=1, chunk_size=7)
    summary = run(KeyedProducer, settings, session, kafka)
    assert [r["from"] for r in session.requests] == [0, 0, 3, 3, 7]
    assert positions_in(kafka, "unit-keyed") == list(range(12))
    assert summary.reconnects == 4 and summary.sent == 12


def test_retries_exhausted_raise_a_clear_stream_error(settings):
    session = FakeNdjsonSession(records(3), refuse=10**6)
    with pytest.raises(StreamError, match=r"The stream at http://api.test/stream_data_unit failed 3 times in a "
                                          r"row .*is the API running"):
        run(KeyedProducer, settings, session, InMemoryKafka())
    assert len(session.requests) == 3  # the first attempt and 2 retries


def test_reconnect_counter_restarts_when_lines_arrive(settings):
    session = FakeNdjsonSession(records(10), breaks=[1, 1, 1, 1, 1])  # 5 breaks > 2 retries, but progress each time
    kafka = InMemoryKafka()
    assert run(KeyedProducer, settings, session, kafka).sent == 10


def test_http_404_fails_at_once(settings):
    session = FakeNdjsonSession(records(3), status=404)
    with pytest.raises(StreamError, match="answered HTTP 404"):
        run(KeyedProducer, settings, session, InMemoryKafka())
    assert len(session.requests) == 1


def test_failed_delivery_restarts_from_kafka_without_loss_or_duplicate(settings):
    failures = {"left": 1}

    def fail(message):
        if message.position == 7 and failures["left"]:
            failures["left"] -= 1
            return RuntimeError("NotEnoughReplicas (fake)")
        return None

    kafka = InMemoryKafka()
    summary = KeyedProducer(settings, session=FakeNdjsonSession(records(40)), **kafka.clients(fail=fail)).run()
    assert positions_in(kafka, "unit-keyed") == list(range(40))
    assert summary.retries == 1 and len(kafka.producers) == 2


def test_persistent_delivery_failure_is_never_silent(settings):
    kafka = InMemoryKafka()
    producer = KeyedProducer(settings, session=FakeNdjsonSession(records(10)),
                             **kafka.clients(fail=lambda m: RuntimeError("broker says no")))
    with pytest.raises(ProducerError, match=r"Producing to topic 'unit-keyed' .* failed 3 times in a row .*"
                                            r"broker says no"):
        producer.run()
    assert kafka.messages("unit-keyed") == []


def test_failure_found_at_flush_is_reported(settings):
    kafka = InMemoryKafka()
    fail = lambda m: RuntimeError("late failure") if m.position == 9 else None  # noqa: E731
    producer = KeyedProducer(settings, session=FakeNdjsonSession(records(10)),
                             **kafka.clients(auto_ack=False, fail=fail))
    with pytest.raises(ProducerError, match="late failure"):
        producer.run()


# ------------------------------------------------------------------ stopping
class StoppingProducer(ProducerABC):
    abstract = True  # registered per test below
    stop_after = 5

    def transform(self, record):
        if record["val"] >= self.stop_after:
            self.stop()
        return record


def test_stop_flushes_and_reports(settings):
    cls = type("Stopping", (StoppingProducer,), {"name": "unit-stopping", "endpoint": "/s", "topic": "unit-stop",
                                                 "key_field": "id"})
    try:
        kafka = InMemoryKafka()
        producer = cls(settings, session=FakeNdjsonSession(records(50)), **kafka.clients(auto_ack=False))
        summary = producer.run()
        assert summary.stopped and summary.sent == 6  # 0..5: the record being handled is sent, then it stops
        recording = kafka.producers[0]
        assert recording.flushes >= 1 and recording.closed
        assert positions_in(kafka, "unit-stop") == list(range(6))  # delivered by the flush
    finally:
        PRODUCERS.unregister("unit-stopping")


def test_follow_keeps_reading_new_data_until_stopped(settings):
    data = records(9)
    producer_box = {}

    def on_request(index, params):
        if index == 1:
            session.lines.extend(orjson.dumps({"_position": i, **r}) for i, r in enumerate(data[5:], start=5))
        if index == 3:
            producer_box["p"].stop()

    session = FakeNdjsonSession(data[:5], on_request=on_request)
    kafka = InMemoryKafka()
    producer = KeyedProducer(settings, session=session, follow=True, poll_interval=0.01, **kafka.clients())
    producer_box["p"] = producer
    summary = producer.run()
    assert positions_in(kafka, "unit-keyed") == list(range(9))
    assert [r["from"] for r in session.requests][:3] == [0, 5, 9]
    assert summary.stopped


def test_sigterm_stops_every_producer_and_they_flush(settings):
    kafka = InMemoryKafka()
    sessions = [FakeNdjsonSession(records(3)), FakeNdjsonSession(records(4))]
    producers = [KeyedProducer(settings, session=sessions[0], follow=True, poll_interval=0.01, **kafka.clients()),
                 KeylessProducer(settings, session=sessions[1], follow=True, poll_interval=0.01, **kafka.clients())]
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    outcomes = run_producers(producers)
    assert [o.error for o in outcomes] == [None, None]
    assert [o.summary.sent for o in outcomes] == [3, 4] and all(o.summary.stopped for o in outcomes)
    assert signal.getsignal(signal.SIGTERM) is not None  # restored


def test_delay_is_passed_to_the_api(settings):
    session = FakeNdjsonSession(records(2))
    run(KeyedProducer, settings, session, InMemoryKafka(), delay=0)
    assert session.requests[0] == {"delay": 0, "from": 0}
    assert session.urls[0] == "http://api.test/stream_data_unit"


# ------------------------------------------------------------------ pieces
def test_line_position():
    assert line_position(b'{"_position":12,"a":1}', 3) == 12
    assert line_position(b'{"_position":12}', 3) == 12
    assert line_position(b'{"a":1,"_position":7}', 3) == 7
    assert line_position(b'{"a":1}', 3) == 4
    assert line_position(b'garbage', 3) == 4


def test_recording_producer_checks_like_kafka_python():
    producer = RecordingProducer()
    with pytest.raises(TypeError):
        producer.send("t", value="not bytes")
    with pytest.raises(TypeError):
        producer.send("t", value=b"v", headers=[("h", "not bytes")])
    future = producer.send("t", value=b"v", key=b"k", partition=0)
    assert future.get(1).value == b"v" and producer.sent_to("t")[0].key == b"k"


def test_command_lists_and_rejects_unknown_names(capsys, monkeypatch):
    assert produce_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "metrics" in out and "/stream_data_metrics -> metrics (key id)" in out
    assert "workorder" in out and "unit-keyed" in out
    assert produce_main(["metrix"]) == 2
    err = capsys.readouterr().err
    assert "Unknown producer 'metrix'; available:" in err and "metrics" in err and "workorder" in err


def test_command_fails_clearly_when_kafka_does_not_answer(capsys, monkeypatch):
    monkeypatch.setenv("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert produce_main(["metrics"]) == 2
    assert "Kafka at 127.0.0.1:1 does not answer" in capsys.readouterr().err


def test_kafka_producer_is_built_lazily_with_the_delivery_settings(settings, mocker):
    from framework.producer.clients import ProducerClients

    built = mocker.patch("kafka.KafkaProducer", return_value=RecordingProducer())
    clients = ProducerClients(settings.replace(producer_compression="gzip", producer_linger_ms=7,
                                               producer_batch_size=1000), "unit")
    built.assert_not_called()
    assert clients.producer() is built.return_value and clients.producer() is built.return_value
    built.assert_called_once()
    config = built.call_args.kwargs
    assert (config["acks"], config["enable_idempotence"], config["allow_auto_create_topics"]) == ("all", True, False)
    assert (config["compression_type"], config["linger_ms"], config["batch_size"]) == ("gzip", 7, 1000)
    assert config["bootstrap_servers"] == settings.bootstrap_servers


def test_stop_from_another_thread_flushes_what_was_sent(settings, mocker):
    kafka = InMemoryKafka()
    flush = mocker.spy(RecordingProducer, "flush")
    producer_box = {}

    def on_request(index, params):
        if index == 1:
            threading.Timer(0.05, producer_box["p"].stop).start()

    session = FakeNdjsonSession(records(4), on_request=on_request)
    producer = KeyedProducer(settings, session=session, follow=True, poll_interval=0.01,
                             **kafka.clients(auto_ack=False))
    producer_box["p"] = producer
    summary = producer.run()
    assert summary.stopped and summary.sent == 4 and flush.call_count >= 1
    assert positions_in(kafka, "unit-keyed") == [0, 1, 2, 3]


def test_requests_session_is_a_valid_default(settings):
    assert isinstance(KeyedProducer(settings)._clients.session(), requests.Session)
