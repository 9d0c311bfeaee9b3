"""Records against the real broker: exact bytes, bad lines, oversized records, static servers, every codec.

Both producer clients (kafka-python, the default, and librdkafka with
PIPELINE_PRODUCER_CLIENT=confluent) where the client matters. Each test uses
topics of its own on the session broker and a few records only.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import orjson
import pytest

from apps.api import create_app, serve_in_thread
from framework.producer.base import PRODUCERS, ProducerABC
from framework.settings import _COMPRESSION
from tests.integration.test_producer_kafka import header, positions, read_topic

pytestmark = pytest.mark.integration

BIG = b'{"time":"2026-01-05T06:00:00Z","id":1,"amount":12345678901234567890.12,"n":123456789012345678901234567890}'
CLIENTS = ("kafka-python", "confluent")


@pytest.fixture
def producer_class():
    """``producer_class(url, key_field=None)``: a producer of a topic of its own, unregistered afterwards."""
    names = []

    def make(url: str, key_field: str | None = "id", partitions: int = 2) -> type[ProducerABC]:
        topic = f"it-records-{uuid.uuid4().hex[:8]}"
        names.append(topic)
        return type(f"P_{topic.replace('-', '_')}", (ProducerABC,),
                    {"name": topic, "endpoint": url, "topic": topic, "key_field": key_field,
                     "partitions": partitions})

    yield make
    for name in names:
        PRODUCERS.unregister(name)


def test_values_reach_kafka_byte_for_byte_and_a_bad_line_is_dead_lettered(settings, tmp_path, producer_class):
    data = tmp_path / "data"
    data.mkdir()
    other = b'{"time":"2026-01-05T06:00:01Z","id":2, "val" : 1.50e0, "s":"\\u00e9"}'
    (data / "feed.jsonl").write_bytes(BIG + b'\n{"time":"2026-01-05T06:00:00.5Z","id":3,oops\n' + other + b"\n")
    with serve_in_thread(create_app(settings, data_dir=data, delay=0)) as server:
        cls = producer_class(server.url + "/stream_data_feed")
        summary = cls(settings).run()
    assert (summary.sent, summary.dead_lettered) == (2, 1)
    by_position = {int(header(r, "source-position")): r.value for r in read_topic(settings, cls.topic)}
    assert by_position == {0: BIG, 2: other}
    (dead,) = read_topic(settings, cls.topic + ".dlq")
    assert dead.value == b'{"time":"2026-01-05T06:00:00.5Z","id":3,oops' and header(dead, "source-position") == b"1"
    assert header(dead, "dlq-reason").startswith(b"the line is not valid JSON")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def static_server(tmp_path):
    """``python3 -m http.server`` over a directory of its own (it ignores ``from``); yields (directory, base URL)."""
    directory = tmp_path / "static"
    directory.mkdir()
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "http.server did not start"
            time.sleep(0.1)
    try:
        yield directory, url
    finally:
        process.terminate()
        process.wait(10)


def test_three_runs_against_a_static_file_server_give_three_messages(settings, static_server, producer_class):
    directory, url = static_server
    lines = [b'{"id":%d,"val":%d.5}' % (i, i) for i in range(3)]
    (directory / "feed.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    cls = producer_class(url + "/feed.jsonl")
    sent = [cls(settings).run().sent for _ in range(3)]
    assert sent == [3, 0, 0]
    records = read_topic(settings, cls.topic)
    assert sorted(r.value for r in records) == lines and positions(records) == [0, 1, 2]


@pytest.mark.parametrize("client", CLIENTS)
def test_an_oversized_record_goes_to_the_dlq_and_a_restart_there_is_exactly_once(settings, static_server,
                                                                                  producer_class, client):
    """11 records, the 6th with a 2 MB string: 10 in the topic, 1 in the DLQ (a prefix), across a restart after it."""
    directory, url = static_server
    settings = settings.replace(producer_client=client)
    lines = [orjson.dumps({"id": i, "s": "x" * (2 * 1024 * 1024 if i == 5 else 3)}) for i in range(11)]
    path = directory / "feed.jsonl"
    cls = producer_class(url + "/feed.jsonl")
    path.write_bytes(b"".join(line + b"\n" for line in lines[:6]))  # the first run ends at the big record
    first = cls(settings).run()
    assert (first.sent, first.dead_lettered) == (5, 1)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    second = cls(settings).run()
    assert (second.sent, second.dead_lettered) == (5, 0)
    assert cls(settings).run().sent == 0
    records = read_topic(settings, cls.topic)
    assert positions(records) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert sorted(r.value for r in records) == sorted(lines[:5] + lines[6:])
    (dead,) = read_topic(settings, cls.topic + ".dlq")
    assert header(dead, "source-position") == b"5" and dead.key == b"5"
    assert header(dead, "dlq-value-bytes") == b"%d" % len(lines[5]) and header(dead, "dlq-truncated") == b"true"
    assert lines[5].startswith(dead.value) and 0 < len(dead.value) <= 4096
    assert b"over the" in header(dead, "dlq-reason")


@pytest.fixture(scope="module")
def codec_api(kafka_broker, tmp_path_factory):
    from framework.testing import local_test_settings

    data = tmp_path_factory.mktemp("codec-data")
    (data / "codec.jsonl").write_bytes(b"".join(b'{"id":%d,"val":"%s"}\n' % (i, b"v" * (i * 7)) for i in range(40)))
    settings = local_test_settings(kafka_broker, tmp_path_factory.mktemp("codec"))
    with serve_in_thread(create_app(settings, data_dir=data, delay=0)) as server:
        yield server.url + "/stream_data_codec"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("codec", _COMPRESSION)
def test_every_compression_codec_produces_and_resumes_with_both_clients(settings, codec_api, producer_class,
                                                                        codec, client):
    settings = settings.replace(producer_compression=codec, producer_client=client)
    cls = producer_class(codec_api)
    assert cls(settings).run().sent == 40
    again = cls(settings).run()  # reads the compressed tail of every partition back to resume
    assert (again.sent, again.dead_lettered) == (0, 0)
    records = read_topic(settings, cls.topic)  # and a reader decompresses them
    assert positions(records) == list(range(40))


@pytest.mark.parametrize("client", CLIENTS)
def test_the_topics_own_max_message_bytes_is_the_limit(settings, static_server, producer_class, client):
    """A topic created with max.message.bytes=2000: a 3000-byte record is dead-lettered, the rest produced."""
    from framework.admin import KafkaAdmin

    directory, url = static_server
    settings = settings.replace(producer_client=client)
    lines = [orjson.dumps({"id": i, "s": "x" * (3000 if i == 1 else 3)}) for i in range(3)]
    (directory / "small.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    cls = producer_class(url + "/small.jsonl")
    with KafkaAdmin(settings) as admin:
        admin.create_topic(cls.topic, partitions=2, configs={"max.message.bytes": "2000"})
    summary = cls(settings).run()
    assert (summary.sent, summary.dead_lettered) == (2, 1)
    assert positions(read_topic(settings, cls.topic)) == [0, 2]
    (dead,) = read_topic(settings, cls.topic + ".dlq")
    assert header(dead, "source-position") == b"1" and dead.value == lines[1]  # the DLQ takes it whole
