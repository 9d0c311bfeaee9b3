"""ProducerABC on the confluent (librdkafka) client, against the real broker and the real streaming API.

The same contract as with kafka-python (tests/integration/test_producer_kafka.py,
whose helpers these tests reuse): every source record exactly once, in order per
partition, with its resume headers; a rerun sends nothing; a run stopped
mid-stream, or failed by a record the broker refuses, leaves each partition a
gap-free prefix, and the next run completes the topic exactly; bad lines go to
the dead-letter topic.
"""
from __future__ import annotations

import http.server
import signal
import threading

import orjson
import pytest

from apps.api import create_app, serve_in_thread
from apps.producers import MetricsProducer
from framework.producer.confluent import ConfluentProducer
from framework.producer.partitioning import partition_for_key
from tests.integration.test_producer_kafka import (_BadLinesHandler, _plugin_producer, _produce_cmd, _wait_for_records,
                                                   header, metrics_class, positions, read_topic, unique,
                                                   write_metrics)
from tests.integration.test_producer_kafka import api, registered  # noqa: F401 - fixtures shared with kafka-python

pytestmark = pytest.mark.integration

RECORDS = 1500  # what the shared `api` fixture serves


@pytest.fixture
def confluent(settings, api):
    """(settings with PIPELINE_PRODUCER_CLIENT=confluent and the API's URL, the source records); API stopped after."""
    server, records = api
    return settings.replace(producer_client="confluent", api_base_url=server.url), records


def assert_prefixes(records, source: list[dict], partitions: int = 3) -> dict[int, list[int]]:
    """Each partition holds, in offset order, a gap-free prefix of the positions meant for it; returns them."""
    held: dict[int, list[int]] = {p: [] for p in range(partitions)}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        held[record.partition].append(int(header(record, "source-position")))
    for p, got in held.items():
        meant = [i for i, r in enumerate(source) if partition_for_key(str(r["id"]).encode(), partitions) == p]
        assert got == meant[:len(got)], f"partition {p} is not a gap-free prefix of its records"
    return held


def test_confluent_client_writes_each_record_once_in_order_with_resume_headers_and_a_rerun_adds_nothing(
        confluent, registered, mocker):
    settings, source = confluent
    built = mocker.spy(ConfluentProducer, "wait_for_brokers")
    topic = unique("it-cf-metrics")
    cls = metrics_class(topic)
    registered.append(topic)

    summary = cls(settings).run()
    assert built.call_count == 1  # the librdkafka client, not kafka-python
    assert (summary.sent, summary.dead_lettered, summary.first_position, summary.last_position) == (
        RECORDS, 0, 0, RECORDS - 1)
    records = read_topic(settings, topic)
    assert len(records) == RECORDS and positions(records) == list(range(RECORDS))
    held = assert_prefixes(records, source)
    assert sum(len(v) for v in held.values()) == RECORDS
    for record in records:
        position = int(header(record, "source-position"))
        assert orjson.loads(record.value) == source[position]
        assert record.key == str(source[position]["id"]).encode()
        assert -1 <= int(header(record, "source-watermark")) < position
    assert read_topic(settings, topic + ".dlq") == []

    again = cls(settings).run()
    assert (again.sent, again.dead_lettered) == (0, 0) and again.skipped_existing <= RECORDS
    assert len(read_topic(settings, topic)) == RECORDS


def test_confluent_client_stopped_mid_stream_then_resumed_gives_an_exact_topic(confluent, registered):
    settings, source = confluent
    topic = unique("it-cf-stop")
    cls = metrics_class(topic)
    registered.append(topic)
    producer = cls(settings.replace(producer_linger_ms=5), delay=0.002)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=producer.run()), daemon=True)
    thread.start()
    try:
        _wait_for_records(settings, topic, 200)
    finally:
        producer.stop()
        thread.join(30)
    assert not thread.is_alive() and result["summary"].stopped
    first = read_topic(settings, topic)
    assert 200 <= len(first) < RECORDS and len(set(positions(first))) == len(first)
    assert_prefixes(first, source)

    rest = cls(settings).run()
    records = read_topic(settings, topic)
    assert positions(records) == list(range(RECORDS)) and rest.sent == RECORDS - len(first)
    assert_prefixes(records, source)


def test_confluent_client_killed_mid_stream_then_restarted_leaves_each_position_once(confluent, tmp_path):
    settings, source = confluent
    topic = unique("it-cf-kill")
    module_dir, env = _plugin_producer(tmp_path, topic, "KillProducer", settings.bootstrap_servers, settings.api_url,
                                       PIPELINE_PRODUCER_CLIENT="confluent")

    proc = _produce_cmd(topic, module_dir, env, "--delay", "0.002")
    _wait_for_records(settings, topic, 300)
    proc.kill()  # SIGKILL: no flush, librdkafka's queue is lost
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed = read_topic(settings, topic)
    assert len(killed) < RECORDS and len(set(positions(killed))) == len(killed)
    assert_prefixes(killed, source)

    proc = _produce_cmd(topic, module_dir, env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    records = read_topic(settings, topic)
    assert positions(records) == list(range(RECORDS))
    assert f"{RECORDS - len(killed)} sent to {topic}" in out


def test_a_record_the_broker_refuses_stops_the_session_without_a_gap_and_is_dead_lettered(
        settings, tmp_path, registered, mocker):
    """A record above the topic's max.message.bytes that the producer did not see coming (its limit check is
    switched off here): librdkafka's gapless guarantee turns the refusal into a fatal error, the session stops
    with no gap, and the next session dead-letters that record and completes the rest.

    It is the first record of its partition, the case the gapless guarantee alone
    does not cover (the broker takes any sequence from a producer new to the
    partition): without the adapter's wait for the first acknowledgement, the
    records queued behind it were written after a gap in most runs.
    """
    from framework.admin import KafkaAdmin
    from framework.producer.clients import ProducerClients

    source = write_metrics(tmp_path / "data", RECORDS)
    big = 0
    source[big]["pad"] = "x" * 150_000
    (tmp_path / "data" / "metrics.json").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in source))
    server = serve_in_thread(create_app(settings, data_dir=tmp_path / "data", delay=0), "127.0.0.1", 0)
    topic = unique("it-cf-big")
    registered.append(topic)
    settings = settings.replace(producer_client="confluent", api_base_url=server.url, producer_retries=2,
                                producer_retry_backoff=0.05, producer_batch_size=16384,
                                producer_linger_ms=0)
    mocker.patch.object(ProducerClients, "max_record_bytes", return_value=10_000_000)
    try:
        with KafkaAdmin(settings) as admin:
            admin.create_topic(topic, 3, configs={"max.message.bytes": "100000"})
        summary = metrics_class(topic)(settings).run()
    finally:
        server.stop()
    assert summary.dead_lettered == 1 and summary.retries >= 1  # what the first session wrote is "already there"
    records = read_topic(settings, topic)
    assert positions(records) == list(range(1, RECORDS))
    for record in records:  # each partition in position order, nothing twice
        assert orjson.loads(record.value) == source[int(header(record, "source-position"))]
    by_partition: dict[int, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(record.partition, []).append(int(header(record, "source-position")))
    assert all(got == sorted(got) for got in by_partition.values())
    (dead,) = read_topic(settings, topic + ".dlq")
    assert header(dead, "source-position") == b"0" and b"too large" in header(dead, "dlq-reason")
    assert orjson.loads(dead.value) == source[big]  # the whole record: it fits the dead-letter topic


def test_confluent_client_dead_letters_bad_lines_once_with_their_reason(settings, registered):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadLinesHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    topic = unique("it-cf-dlq")
    registered.append(topic)
    cls = type("CfSensors", (MetricsProducer,), {
        "name": topic, "topic": topic, "key_field": "sensor",
        "endpoint": f"http://127.0.0.1:{httpd.server_address[1]}/sensors"})
    settings = settings.replace(producer_client="confluent")
    try:
        summary = cls(settings).run()
        assert (summary.sent, summary.dead_lettered) == (3, 4)
        assert positions(read_topic(settings, topic)) == [0, 4, 6]
        dlq = {int(header(r, "source-position")): r for r in read_topic(settings, topic + ".dlq")}
        assert sorted(dlq) == [1, 2, 3, 5]
        assert header(dlq[2], "dlq-reason") == b"the line is a JSON array, not an object"
        assert header(dlq[3], "dlq-reason") == f"the record has no 'sensor' field, the key of topic {topic!r}".encode()
        assert dlq[5].value == _BadLinesHandler.LINES[5]  # the raw bytes
        assert all(header(r, "source-topic") == topic.encode() for r in dlq.values())

        again = cls(settings).run()
        assert (again.sent, again.dead_lettered) == (0, 0)
        assert len(read_topic(settings, topic)) == 3 and len(read_topic(settings, topic + ".dlq")) == 4
    finally:
        httpd.shutdown()
        httpd.server_close()
