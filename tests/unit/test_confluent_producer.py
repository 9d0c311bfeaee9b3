"""The confluent (librdkafka) client without a broker: the setting, the client choice, the adapter's logic.

``FakeLibrdkafka`` stands in for ``confluent_kafka.Producer`` the way librdkafka
behaves towards its caller: delivery reports only inside ``poll``/``flush`` on
the calling thread, ``purge`` turning queued records into ``_PURGE_QUEUE``
reports, ``BufferError`` when its queue is full, a fatal error raised from
``poll``/``flush``, and a process abort (here: an AssertionError) when a
callback polls again; and like a broker with an idempotent producer, it
writes nothing of a partition after a failed record. Records it "delivers" land in an
:class:`~framework.testing.producer.InMemoryKafka`, so ProducerABC's resume
works against it as against a broker.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka.errors import KafkaTimeoutError

from framework.producer.confluent import (ConfluentDeliveryError, ConfluentProducer, ConfluentProducerError,
                                          producer_config)
from framework.errors import ProducerError, SettingsError
from framework.producer.base import PRODUCERS, ProducerABC
from framework.producer.clients import KafkaFailure, ProducerClients
from framework.settings import Settings
from framework.testing.producer import (FakeAdmin, FakeConsumer, FakeNdjsonSession, InMemoryKafka, RecordedMessage,
                                        RecordingProducer)


class FakeLibrdkafka:
    """``confluent_kafka.Producer`` as its caller sees it (see the module docstring)."""

    built: list["FakeLibrdkafka"] = []
    kafka: InMemoryKafka | None = None
    fail = staticmethod(lambda message: None)  # message -> KafkaError | None
    capacity = 1_000_000
    reachable = True

    def __init__(self, conf: dict) -> None:
        self.conf = conf
        self.queue: list[tuple[RecordedMessage, object]] = []  # produced, not yet transmitted
        self.reports: list[tuple[object, KafkaError | None, RecordedMessage]] = []  # not yet served
        self.events: list[tuple[str, int | None]] = []
        self.purges: list[tuple[bool, bool]] = []
        self.refused: set[tuple[str, int]] = set()
        self.raise_fatal: KafkaError | None = None  # raised by the next poll/flush
        self.serving = False
        self.nested = False
        self.closed = False
        self.built.append(self)

    def produce(self, topic, value=None, key=None, partition=-1, callback=None, on_delivery=None, timestamp=0,
                headers=None):  # confluent-kafka's order (Producer.c): callback, then its alias on_delivery
        on_delivery = callback or on_delivery
        if self.closed:
            raise RuntimeError("Producer has been closed")
        if len(self.queue) >= self.capacity:
            raise BufferError("Local: Queue full")
        message = RecordedMessage(topic, partition, key, value, list(headers or []))
        self.queue.append((message, on_delivery))
        self.events.append(("produce", message.position))

    def _transmit(self) -> None:
        for message, callback in self.queue:
            destination = (message.topic, message.partition)
            error = self.fail(message)
            if destination in self.refused:  # the broker's idempotence: nothing after a failed batch
                error = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER)
            elif error is not None:
                self.refused.add(destination)
            if error is None and self.kafka is not None:
                self.kafka.append(message)
            self.events.append(("delivered" if error is None else "failed", message.position))
            self.reports.append((callback, error, message))
        self.queue = []

    def _serve(self) -> int:
        if self.serving:
            self.nested = True
            raise AssertionError("poll/flush called from a callback: confluent-kafka would abort the process")
        if self.raise_fatal is not None:
            error, self.raise_fatal = self.raise_fatal, None
            raise KafkaException(error)
        self.serving = True
        try:
            self._transmit()
            served = 0
            while self.reports:
                callback, error, message = self.reports.pop(0)
                callback(error, message)
                served += 1
            return served
        finally:
            self.serving = False

    def poll(self, timeout=None) -> int:
        return self._serve()

    def flush(self, timeout=None) -> int:
        self._serve()
        return len(self)

    def purge(self, in_queue=True, in_flight=True, blocking=True) -> None:
        self.purges.append((in_queue, in_flight))
        for message, callback in self.queue:
            self.reports.append((callback, KafkaError(KafkaError._PURGE_QUEUE), message))
        self.queue = []

    def list_topics(self, topic=None, timeout=-1):
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker "
                                                                   "transport failure"))
        return SimpleNamespace(topics={})

    def close(self) -> None:
        self.closed = True

    def __len__(self) -> int:
        return len(self.queue) + len(self.reports)


@pytest.fixture
def fake(mocker):
    """confluent_kafka.Producer replaced by FakeLibrdkafka (fresh class state per test)."""
    cls = type("FakeLibrdkafka", (FakeLibrdkafka,), {"built": [], "kafka": None})
    mocker.patch("confluent_kafka.Producer", cls)
    return cls


@pytest.fixture
def settings() -> Settings:  # no broker in unit tests
    return Settings.from_env({}, producer_client="confluent", producer_retries=2, producer_retry_backoff=0.001,
                             api_base_url="http://api.test")


def send(producer: ConfluentProducer, position: int, partition: int = 0, topic: str = "t"):
    return producer.send(topic, value=b"{}", key=b"k", partition=partition,
                         headers=[("source-position", b"%d" % position)])


# ------------------------------------------------------------------ the setting
def test_the_client_setting_defaults_to_kafka_python_and_accepts_confluent():
    assert Settings.from_env({}).producer_client == "kafka-python"
    assert Settings.from_env({"PIPELINE_PRODUCER_CLIENT": "confluent"}).producer_client == "confluent"


def test_an_unknown_client_is_refused_with_a_sentence_naming_the_variable():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"PIPELINE_PRODUCER_CLIENT": "librdkafka"})
    assert str(err.value) == ("PIPELINE_PRODUCER_CLIENT=librdkafka is not valid; expected one of kafka-python, "
                              "confluent.")
    with pytest.raises(SettingsError, match="Did you mean PIPELINE_PRODUCER_CLIENT"):
        Settings.from_env({"PIPELINE_PRODUCER_CLEINT": "confluent"})


# ------------------------------------------------------------------ choosing the client
class UnitConfluentProducer(ProducerABC):
    name = "unit-confluent"
    endpoint = "/stream_data_unit"
    topic = "unit-confluent"
    key_field = "id"


@pytest.fixture(scope="module", autouse=True)
def _unregister():
    yield
    PRODUCERS.unregister("unit-confluent")


def test_producer_abc_builds_the_client_the_setting_names(fake, mocker):
    kafka_python = mocker.patch("kafka.KafkaProducer", return_value=RecordingProducer())
    base = Settings.from_env({}, producer_linger_ms=7, producer_batch_size=1000, producer_compression="lz4")

    chosen = UnitConfluentProducer(base.replace(producer_client="confluent"), producer_config={"linger.ms": 3})
    client = chosen._clients.producer()
    assert isinstance(client, ConfluentProducer) and kafka_python.call_count == 0
    conf = fake.built[0].conf
    assert (conf["acks"], conf["enable.idempotence"], conf["enable.gapless.guarantee"]) == ("all", True, True)
    assert (conf["message.timeout.ms"], conf["allow.auto.create.topics"]) == (0, False)
    assert (conf["batch.size"], conf["compression.type"], conf["linger.ms"]) == (1000, "lz4", 3)  # override last
    assert conf["bootstrap.servers"] == base.bootstrap_servers
    assert conf["client.id"] == "pipeline-producer-unit-confluent"

    default = UnitConfluentProducer(base)
    assert default._clients.producer() is kafka_python.return_value and len(fake.built) == 1


def test_other_users_of_producer_clients_keep_kafka_python(fake, mocker, settings):
    kafka_python = mocker.patch("kafka.KafkaProducer", return_value=RecordingProducer())
    assert ProducerClients(settings, "event-log").producer() is kafka_python.return_value and fake.built == []
    with pytest.raises(ProducerError, match=r"Unknown producer client 'rdkafka'; available: kafka-python, confluent"):
        ProducerClients(settings, "x", client="rdkafka")


def test_kafka_python_names_in_producer_config_fail_clearly_before_the_client_is_built(settings):
    with pytest.raises(ProducerError, match=r"producer_config key 'linger_ms' is not a librdkafka producer property; "
                                            r"did you mean 'linger.ms'\?"):
        ProducerClients(settings, "unit", producer_config={"linger_ms": 5}, client="confluent")


def test_librdkafkas_own_refusal_names_the_property_naming_rule(settings):
    clients = ProducerClients(settings, "unit", producer_config={"linger.ms": "soon"}, client="confluent")
    with pytest.raises(ProducerError, match=r"cannot be created: Invalid value for configuration property .*"
                                            r"librdkafka property names such as linger.ms"):
        clients.producer()


def test_an_unreachable_broker_at_build_time_is_a_kafka_failure_and_the_client_is_released(fake, settings):
    fake.reachable = False
    clients = ProducerClients(settings, "unit", client="confluent")
    with pytest.raises(KafkaFailure, match="connecting the producer \\(librdkafka\\) failed: Failed to get metadata"):
        clients.producer()
    assert fake.built[0].closed and clients.current is None


def test_no_broker_behind_the_address_is_a_kafka_failure_with_the_real_librdkafka(settings, monkeypatch):
    monkeypatch.setattr("framework.producer.clients.CONNECT_TIMEOUT", 0.5)
    clients = ProducerClients(settings.replace(kafka_bootstrap_servers="127.0.0.1:1"), "unit", client="confluent")
    with pytest.raises(KafkaFailure, match=r"connecting the producer \(librdkafka\) failed: .*(transport|timed out)"):
        clients.producer()
    assert clients.current is None


def test_producer_config_is_librdkafka_properties_with_overrides_last(settings):
    conf = producer_config(settings.replace(producer_compression="none"), "cid",
                           {"acks": "1", "queue.buffering.max.ms": 1})
    assert conf["acks"] == "1" and conf["queue.buffering.max.ms"] == 1 and conf["compression.type"] == "none"
    assert conf["client.id"] == "cid" and "client.id" not in producer_config(settings)


# ------------------------------------------------------------------ the adapter: futures and reports
def test_futures_complete_in_poll_and_flush_on_the_calling_thread(fake, settings):
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    seen = []
    future = send(producer, 0).add_callback(seen.append)
    assert not future.is_done and seen == []  # reports are only served by poll/flush
    producer.flush(5)
    assert future.is_done and future.exception is None and seen == [future.value]
    late = []
    future.add_callback(late.append)  # added after completion: called at once, like kafka-python's Future
    assert late == [future.value]


def test_the_second_record_to_a_destination_waits_for_the_first_acknowledgement(fake, settings):
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    for position, partition in ((0, 0), (1, 1), (2, 0), (3, 0), (4, 1)):
        send(producer, position, partition)
    events = fake.built[0].events
    # 0 and 1 (first to partitions 0 and 1) go out together; 2 (second to partition 0) only after 0 was
    # acknowledged; from then on nothing waits.
    assert events == [("produce", 0), ("produce", 1), ("delivered", 0), ("delivered", 1), ("produce", 2),
                      ("produce", 3), ("produce", 4)]


def test_a_failed_first_record_stops_the_destination_before_its_second_is_queued(fake, settings):
    fake.fail = staticmethod(lambda m: KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if m.position == 0 else None)
    producer = ConfluentProducer(settings)
    first = send(producer, 0)
    with pytest.raises(ConfluentProducerError, match=r"does not send any more: an earlier record was not delivered "
                                                     r"\(MSG_SIZE_TOO_LARGE"):
        send(producer, 1)
    assert isinstance(first.exception, ConfluentDeliveryError) and "MSG_SIZE_TOO_LARGE" in str(first.exception)
    assert ("produce", 1) not in fake.built[0].events


def test_the_first_failed_delivery_halts_the_client_and_every_outstanding_future_fails(fake, settings):
    fake.fail = staticmethod(lambda m: KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if m.position == 3 else None)
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    futures = [send(producer, 0), send(producer, 1)]  # 1 waits for 0: both acknowledged now
    futures += [send(producer, p) for p in (2, 3, 4, 5)]
    errors = []
    for f in futures:
        f.add_errback(errors.append)
    producer.flush(5)  # 3 fails: 4 and 5, in the same flush, must not count as delivered
    assert [f.exception is None for f in futures[:3]] == [True, True, True]
    assert "MSG_SIZE_TOO_LARGE" in str(futures[3].exception)
    assert all("halted: an earlier record was not delivered" in str(f.exception) for f in futures[4:])
    assert producer.halted and fake.built[0].purges == [(True, True)]
    with pytest.raises(ConfluentProducerError, match="does not send any more: an earlier record was not delivered"):
        send(producer, 6)
    assert ("produce", 6) not in fake.built[0].events
    assert str(errors[0]).startswith("MSG_SIZE_TOO_LARGE")  # the errbacks learn the cause first


def test_halt_purges_queued_records_and_fails_their_futures_at_once(fake, settings):
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    send(producer, 0).add_errback(pytest.fail)
    producer.flush(5)
    queued = [send(producer, p) for p in (1, 2, 3)]
    producer.halt("test")
    assert all(isinstance(f.exception, ConfluentDeliveryError) for f in queued)
    assert str(queued[0].exception) == "_PURGE_QUEUE: Local: Purged in queue (not sent: test)"
    assert [e for e in fake.built[0].events if e[0] == "delivered"] == [("delivered", 0)]


def test_halt_from_an_errback_inside_flush_never_polls_again(fake, settings):
    """confluent-kafka aborts the process when a delivery report's callback polls; the fake asserts instead."""
    fake.fail = staticmethod(lambda m: KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if m.position == 2 else None)
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    futures = [send(producer, 0), send(producer, 1), send(producer, 2), send(producer, 3)]
    futures[2].add_errback(lambda exc: producer.halt("from an errback"))
    producer.flush(5)
    assert all(f.is_done for f in futures) and producer.halted and not fake.built[0].nested


def test_a_fatal_error_from_poll_fails_everything_outstanding_and_every_later_flush(fake, settings):
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    send(producer, 0)
    producer.flush(5)
    pending = [send(producer, p) for p in (1, 2)]
    fake.built[0].raise_fatal = KafkaError(KafkaError._GAPLESS_GUARANTEE, "gap-less ordering would not be guaranteed",
                                           fatal=True)
    with pytest.raises(ConfluentProducerError, match="_GAPLESS_GUARANTEE"):
        producer.flush(5)
    assert all(isinstance(f.exception, ConfluentDeliveryError) for f in pending)
    with pytest.raises(ConfluentProducerError, match="_GAPLESS_GUARANTEE"):
        producer.flush(5)
    producer.close(1)  # does not raise the old failure again, and releases the client
    assert fake.built[0].closed


def test_a_full_local_queue_is_served_and_retried_then_bounded(fake, settings):
    fake.capacity = 2
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600, max_block=0.2)
    futures = [send(producer, p, partition=p) for p in range(5)]  # queue full at 2: served, then produced
    producer.flush(5)
    assert all(f.exception is None for f in futures)
    fake.capacity = 0
    with pytest.raises(KafkaTimeoutError, match="local queue stayed full for 0.2 s"):
        send(producer, 9)


def test_flush_raises_when_records_stay_unacknowledged(fake, settings):
    producer = ConfluentProducer(settings)
    fake.built[0].flush = lambda timeout=None: 3
    with pytest.raises(ConfluentDeliveryError, match="3 records were not acknowledged within 1.5 s"):
        producer.flush(1.5)


def test_close_purges_what_is_left_and_releases_the_client(fake, settings):
    producer = ConfluentProducer(settings, poll_every=1000, poll_interval=3600)
    fake.built[0].flush = lambda timeout=None: 1  # an unreachable broker: the flush times out
    stuck = send(producer, 0)
    with pytest.raises(ConfluentDeliveryError):
        producer.close(0.1)
    assert fake.built[0].closed and fake.built[0].purges and isinstance(stuck.exception, ConfluentDeliveryError)
    with pytest.raises(ConfluentProducerError, match="closed"):
        send(producer, 1)


# ------------------------------------------------------------------ ProducerABC on the confluent client
def records(n: int, keys: int = 5) -> list[dict]:
    return [{"id": i % keys, "time": f"2026-01-05T06:00:{i % 60:02d}.000Z", "val": float(i)} for i in range(n)]


def positions_in(kafka: InMemoryKafka, topic: str) -> list[int]:
    return sorted(m.position for m in kafka.messages(topic))


def test_producer_abc_on_the_confluent_client_restarts_after_a_failure_without_loss_or_duplicate(fake, settings):
    kafka = InMemoryKafka()
    fake.kafka = kafka
    failures = {"left": 1}

    def fail(message):
        if message.position == 17 and failures["left"]:
            failures["left"] -= 1
            return KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)
        return None

    fake.fail = staticmethod(fail)
    producer = UnitConfluentProducer(settings, session=FakeNdjsonSession(records(60)), admin=FakeAdmin(kafka),
                                     consumer_factory=lambda: FakeConsumer(kafka))
    summary = producer.run()
    assert positions_in(kafka, "unit-confluent") == list(range(60))
    assert summary.sent + summary.skipped_existing >= 60 and summary.retries == 1
    first, second = fake.built
    assert first.closed and first.purges and second.closed  # the failed client was purged and released
    again = UnitConfluentProducer(settings, session=FakeNdjsonSession(records(60)), admin=FakeAdmin(kafka),
                                  consumer_factory=lambda: FakeConsumer(kafka)).run()
    assert again.sent == 0 and positions_in(kafka, "unit-confluent") == list(range(60))


def test_producer_abc_on_the_confluent_client_never_hides_a_persistent_failure(fake, settings):
    kafka = InMemoryKafka()
    fake.kafka = kafka
    fake.fail = staticmethod(lambda m: KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    producer = UnitConfluentProducer(settings, session=FakeNdjsonSession(records(10)), admin=FakeAdmin(kafka),
                                     consumer_factory=lambda: FakeConsumer(kafka))
    with pytest.raises(ProducerError, match=r"failed 3 times in a row .*TOPIC_AUTHORIZATION_FAILED"):
        producer.run()
    assert kafka.messages("unit-confluent") == [] and all(p.closed for p in fake.built)


def test_the_real_librdkafka_takes_the_positional_produce_and_reports_to_the_future(settings):
    """send() calls produce() positionally (faster than keywords); the real client must route the
    delivery report to the future and accept the headers list in that order."""
    producer = ConfluentProducer(settings.replace(kafka_bootstrap_servers="127.0.0.1:1"))
    try:
        future = producer.send("unit-positional", value=b'{"id":1}', key=b"k", partition=0,
                               headers=[("pipeline-position", b"7"), ("pipeline-watermark", b"6")])
        assert not future.is_done
        producer._producer.purge(in_queue=True, in_flight=True)  # no broker: purge, then serve the report
        producer._producer.poll(0)
        assert future.is_done and isinstance(future.exception, ConfluentDeliveryError)
        assert "PURGE_QUEUE" in str(future.exception)
        assert not producer._outstanding
    finally:
        producer.halt("test over")
        producer.close()
