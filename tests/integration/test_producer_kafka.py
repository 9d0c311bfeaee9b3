"""ProducerABC against the real broker and the real streaming API (apps/api.py).

Each test writes its own small data directory and uses topics of its own (the
broker is shared by the session). The crash test runs ``cmd/produce_cmd.py`` as
a subprocess, stops it with SIGTERM, kills it with SIGKILL mid-stream, restarts
it, and then reads every position back exactly once.
"""
from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from apps.api import create_app, serve_in_thread
from apps.producers import MetricsProducer
from framework.producer.partitioning import partition_for_key
from framework.producer.base import PRODUCERS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_metrics(data_dir: Path, n: int, ids: int = 12) -> list[dict]:
    """``n`` metrics records in time order (so position i is record i)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    records = [{"id": i % ids, "time": f"2026-01-05T{6 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                "val": round(i * 0.5, 3)} for i in range(n)]
    (data_dir / "metrics.json").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return records


def metrics_class(topic: str):
    """MetricsProducer with a topic (and registry name) of its own."""
    return type(f"Metrics_{topic.replace('-', '_')}", (MetricsProducer,), {"name": topic, "topic": topic})


def read_topic(settings, topic: str, timeout: float = 30.0) -> list:
    """Every record of ``topic``, all partitions, from the beginning to the current end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out, deadline = [], time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def header(record, name: str) -> bytes | None:
    return next((v for k, v in record.headers if k == name), None)


def positions(records) -> list[int]:
    return sorted(int(header(r, "source-position")) for r in records)


@pytest.fixture
def api(settings, tmp_path):
    """The real streaming API on a free port, over this test's data directory; returns (server, records)."""
    records = write_metrics(tmp_path / "data", 1500)
    server = serve_in_thread(create_app(settings, data_dir=tmp_path / "data", delay=0), "127.0.0.1", 0)
    yield server, records
    server.stop()


@pytest.fixture
def registered():
    names = []
    yield names
    for name in names:
        PRODUCERS.unregister(name)


def test_topic_holds_exactly_the_source_records_and_a_rerun_adds_nothing(settings, api, registered):
    server, source = api
    topic = unique("it-metrics")
    cls = metrics_class(topic)
    registered.append(topic)
    settings = settings.replace(api_base_url=server.url)

    summary = cls(settings).run()
    assert (summary.sent, summary.dead_lettered, summary.first_position, summary.last_position) == (1500, 0, 0, 1499)
    records = read_topic(settings, topic)
    assert len(records) == 1500 and positions(records) == list(range(1500))
    by_position = {int(header(r, "source-position")): r for r in records}
    for position, record in by_position.items():
        assert orjson.loads(record.value) == source[position]  # the original record, _position removed
        assert record.key == str(source[position]["id"]).encode()
        assert record.partition == partition_for_key(record.key, 3)  # same key -> same partition, Java's choice
    assert read_topic(settings, topic + ".dlq") == []

    again = cls(settings).run()
    assert again.sent == 0 and again.dead_lettered == 0
    assert again.sent + again.skipped_existing <= 1500
    assert len(read_topic(settings, topic)) == 1500


def _plugin_producer(tmp_path: Path, topic: str, class_name: str, bootstrap_servers: str, api_url: str,
                     **env_extra: str) -> tuple[Path, dict]:
    """A module ``itest_producers`` with a MetricsProducer for ``topic``, and the environment to run it in."""
    module_dir = tmp_path / "plugins"
    module_dir.mkdir()
    (module_dir / "itest_producers.py").write_text(
        "from apps.producers import MetricsProducer\n\n\n"
        f"class {class_name}(MetricsProducer):\n    name = {topic!r}\n    topic = {topic!r}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_KAFKA_BOOTSTRAP_SERVERS=bootstrap_servers, PIPELINE_API_BASE_URL=api_url,
               PIPELINE_PRODUCER_LINGER_MS="5", PYTHONPATH=os.pathsep.join([str(module_dir), str(ROOT)]), **env_extra)
    return module_dir, env


def _produce_cmd(name: str, module_dir: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "cmd" / "produce_cmd.py"), name, "--module", "itest_producers",
                             *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(settings, topic: str, at_least: int, timeout: float = 30.0) -> int:
    from framework.admin import KafkaAdmin

    deadline = time.monotonic() + timeout
    with KafkaAdmin(settings) as admin:
        while time.monotonic() < deadline:
            if topic in admin.list_topics():
                count = sum(admin.end_offsets(topic).values())
                if count >= at_least:
                    return count
            time.sleep(0.1)
    raise AssertionError(f"{topic} did not reach {at_least} records in {timeout}s")


def test_sigterm_then_sigkill_mid_stream_then_restart_leaves_each_position_once(settings, api, tmp_path):
    server, source = api
    topic = unique("it-crash")
    module_dir, env = _plugin_producer(tmp_path, topic, "CrashProducer", settings.bootstrap_servers, server.url)

    # 1. SIGTERM: stops reading, flushes, prints its summary, exits 0.
    proc = _produce_cmd(topic, module_dir, env, "--delay", "0.002")
    _wait_for_records(settings, topic, 100)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"{topic}: " in out and "(stopped)" in out
    after_term = len(read_topic(settings, topic))
    assert 100 <= after_term < 1500

    # 2. SIGKILL mid-stream: no flush, no goodbye.
    proc = _produce_cmd(topic, module_dir, env, "--delay", "0.002")
    _wait_for_records(settings, topic, after_term + 150)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after_kill = read_topic(settings, topic)
    assert len(after_kill) < 1500 and len(set(positions(after_kill))) == len(after_kill)

    # 3. Restart at full speed: completes the stream, each position exactly once.
    proc = _produce_cmd(topic, module_dir, env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    records = read_topic(settings, topic)
    assert positions(records) == list(range(1500))  # every position, once
    for record in records:
        assert orjson.loads(record.value) == source[int(header(record, "source-position"))]
    assert f"{1500 - len(after_kill)} sent to {topic}" in out

    # 4. Once more: nothing new.
    proc = _produce_cmd(topic, module_dir, env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"0 sent to {topic}" in out and len(read_topic(settings, topic)) == 1500


def test_api_restart_mid_stream_is_survived_without_gap_or_repeat(settings, tmp_path, registered):
    records = write_metrics(tmp_path / "data", 1200)
    app = create_app(settings, data_dir=tmp_path / "data", delay=0)
    server = serve_in_thread(app, "127.0.0.1", 0)
    port = server.port
    topic = unique("it-restart")
    registered.append(topic)
    settings = settings.replace(api_base_url=server.url, producer_retry_backoff=0.2, producer_retries=5)
    producer = metrics_class(topic)(settings, delay=0.002)
    result = {}
    thread = threading.Thread(target=lambda: result.update(summary=producer.run()), daemon=True)
    thread.start()
    try:
        _wait_for_records(settings, topic, 200)
        server.stop()  # streams end at once, incomplete
        time.sleep(0.5)  # the producer retries against a closed port meanwhile
        server = serve_in_thread(app, "127.0.0.1", port)
        thread.join(60)
    finally:
        producer.stop()
        server.stop()
    assert not thread.is_alive()
    summary = result["summary"]
    assert summary.reconnects >= 1
    got = read_topic(settings, topic)
    assert positions(got) == list(range(1200))
    assert [orjson.loads(r.value) for r in sorted(got, key=lambda r: int(header(r, "source-position")))] == records


class _BadLinesHandler(http.server.BaseHTTPRequestHandler):
    """A generic NDJSON endpoint (no ``_position``) with malformed lines; honours ``from``."""

    protocol_version = "HTTP/1.1"
    LINES = [b'{"sensor": 1, "c": 20.5}', b'{"sensor": 2, "c": 21.0', b'[1, 2, 3]', b'{"c": 22.0}',
             b'{"sensor": 3, "c": 23.5}', b'\xff\xfe not utf-8', b'{"sensor": 1, "c": 19.0}']

    def do_GET(self) -> None:
        start = int(parse_qs(urlparse(self.path).query).get("from", ["0"])[0])
        body = b"".join(line + b"\n" for line in self.LINES[start:])
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_malformed_lines_land_in_the_dead_letter_topic_with_their_reason(settings, registered):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadLinesHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    topic = unique("it-dlq")
    registered.append(topic)
    cls = type("Sensors", (MetricsProducer,), {
        "name": topic, "topic": topic, "key_field": "sensor",
        "endpoint": f"http://127.0.0.1:{httpd.server_address[1]}/sensors"})
    try:
        summary = cls(settings).run()
        assert (summary.sent, summary.dead_lettered) == (3, 4)
        good = read_topic(settings, topic)
        assert positions(good) == [0, 4, 6]
        assert sorted(orjson.loads(r.value)["c"] for r in good) == [19.0, 20.5, 23.5]
        dlq = {int(header(r, "source-position")): r for r in read_topic(settings, topic + ".dlq")}
        assert sorted(dlq) == [1, 2, 3, 5]
        assert header(dlq[1], "dlq-reason").startswith(b"the line is not valid JSON")
        assert header(dlq[2], "dlq-reason") == b"the line is a JSON array, not an object"
        assert header(dlq[3], "dlq-reason") == f"the record has no 'sensor' field, the key of topic {topic!r}".encode()
        assert header(dlq[5], "dlq-reason").startswith(b"the line is not valid JSON")
        assert dlq[5].value == _BadLinesHandler.LINES[5]  # the raw bytes
        assert all(header(r, "source-topic") == topic.encode() for r in dlq.values())

        again = cls(settings).run()
        assert (again.sent, again.dead_lettered) == (0, 0)
        assert len(read_topic(settings, topic)) == 3 and len(read_topic(settings, topic + ".dlq")) == 4
    finally:
        httpd.shutdown()
        httpd.server_close()
