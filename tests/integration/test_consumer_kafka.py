"""A Parquet consumer against the real broker and a real local Spark: exact counts, quarantine, crashes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kafka import KafkaProducer

from apps.consumers import METRICS_SCHEMA, WORKORDER_SCHEMA
from framework.admin import KafkaAdmin
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.sinks import ParquetWriter

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MALFORMED = {
    b"not json at all": "not valid JSON",
    b"[1, 2, 3]": "not a JSON object (got an array)",
    b'{"time": "2026-01-05T08:00:00.000Z", "val": 1.0}': "missing required field 'id'",
    b'{"id": 7, "time": "2026-01-05T08:00:00.000Z", "val": "abc"}': "field 'val' expected double, got \"abc\"",
}


def _time(i: int) -> str:
    return f"2026-01-05T{8 + i // 3600:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"


def produce(settings, metrics: str, workorder: str, n: int, start: int = 0, malformed: bool = False):
    """``n`` good records to each topic (+ the malformed ones to ``metrics``); {topic: {(partition, offset)}}."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=10)
    futures: dict[str, list] = {metrics: [], workorder: [], "bad": []}
    for i in range(start, start + n):
        value = {"id": i, "time": _time(i), "val": i / 4}
        futures[metrics].append(producer.send(metrics, key=str(i).encode(),
                                              value=json.dumps(value, separators=(",", ":")).encode()))
        order = {"time": _time(i), "product": i % 40, "production": i * 2}
        futures[workorder].append(producer.send(workorder, key=str(i % 40).encode(), value=json.dumps(order).encode()))
    if malformed:
        futures["bad"] = [producer.send(metrics, value=value) for value in MALFORMED]
    producer.flush()
    producer.close()
    return {topic: {(md.partition, md.offset) for md in (f.get(timeout=30) for f in fs)}
            for topic, fs in futures.items()}


def new_topics(settings, prefix: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    topics = (f"{prefix}-metrics-{suffix}", f"{prefix}-workorder-{suffix}")
    with KafkaAdmin(settings) as admin:
        for topic in topics:
            admin.create_topic(topic, partitions=3)
    return topics


def offsets_of(table: Path) -> list[tuple[int, int]]:
    data = pq.read_table(table, columns=["kafka_partition", "kafka_offset"])
    return list(zip(data.column("kafka_partition").to_pylist(), data.column("kafka_offset").to_pylist(), strict=True))


def assert_exact(table: Path, expected: set[tuple[int, int]]) -> None:
    offsets = offsets_of(table)
    assert len(offsets) == len(expected), f"{table}: {len(offsets)} rows, expected {len(expected)}"
    assert set(offsets) == expected  # unique and complete


@pytest.fixture
def declared():
    names = []

    def declare(name: str, topics: tuple[str, str]):
        cls = type("ItParquetConsumer", (ConsumerSparkABC,), {
            "name": name, "topics": list(topics), "writer": ParquetWriter(),
            "schema": {topics[0]: METRICS_SCHEMA, topics[1]: WORKORDER_SCHEMA}})
        names.append(name)
        return cls
    yield declare
    for name in names:
        CONSUMERS.unregister(name)


def test_bounded_run_writes_every_record_once_and_quarantines_the_malformed(spark, settings, declared):
    metrics, workorder = new_topics(settings, "it")
    n = 1500
    sent = produce(settings, metrics, workorder, n, malformed=True)
    consumer_cls = declared("it-parquet", (metrics, workorder))

    with consumer_cls(settings, spark=spark, max_offsets_per_trigger=600) as consumer:
        summary = consumer.run(mode="bounded")

    m, w = summary.topics[metrics], summary.topics[workorder]
    assert (m.rows_written, m.rows_quarantined, m.lag) == (n, len(MALFORMED), 0)
    assert (w.rows_written, w.rows_quarantined, w.lag) == (n, 0, 0)
    assert m.batches >= 3 and w.batches >= 3  # maxOffsetsPerTrigger splits the availableNow run
    assert not summary.stopped and summary.rows_per_second > 0
    assert_exact(settings.output_dir / metrics, sent[metrics])
    assert_exact(settings.output_dir / workorder, sent[workorder])
    table = pq.read_table(settings.output_dir / metrics)
    assert table.column_names == ["id", "time", "val", "kafka_topic", "kafka_partition", "kafka_offset",
                                  "kafka_timestamp", "kafka_key"]
    assert sorted(table.column("id").to_pylist()) == list(range(n))
    row = next(r for r in table.to_pylist() if r["id"] == 61)
    assert (row["val"], row["kafka_key"], row["kafka_topic"]) == (61 / 4, "61", metrics)
    assert row["time"].isoformat() == "2026-01-05T08:01:01+00:00"

    quarantine = pq.read_table(settings.output_dir / f"{metrics}_quarantine").to_pylist()
    assert {q["raw_value"].encode(): q["reason"] for q in quarantine} == MALFORMED
    assert {(q["kafka_partition"], q["kafka_offset"]) for q in quarantine} == sent["bad"]
    assert not list((settings.output_dir / f"{workorder}_quarantine").glob("batch-*.parquet"))

    files = sorted(p.name for p in (settings.output_dir / metrics).iterdir())
    with consumer_cls(settings, spark=spark) as consumer:
        again = consumer.run(mode="bounded")
    assert (again.rows_written, again.rows_quarantined) == (0, 0)
    assert again.topics[metrics].lag == 0
    assert sorted(p.name for p in (settings.output_dir / metrics).iterdir()) == files
    assert_exact(settings.output_dir / metrics, sent[metrics])


def _consume_cmd(env: dict, log: Path, *args: str) -> subprocess.Popen:
    """``python cmd/consume_cmd.py fixture-parquet ...`` in its own process group (Python + its JVM)."""
    cmd = [sys.executable, "cmd/consume_cmd.py", "fixture-parquet", "--module", "tests.integration.consumer_fixtures",
           *args]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"consume_cmd exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_sigkill_mid_run_and_restart_give_exact_counts_and_sigterm_stops_cleanly(settings, tmp_path):
    metrics, workorder = new_topics(settings, "crash")
    n = 800
    sent = produce(settings, metrics, workorder, n, malformed=True)
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
    env.update(PIPELINE_KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers, PIPELINE_OUTPUT_DIR=str(out),
               PIPELINE_CHECKPOINT_DIR=str(checkpoints), PIPELINE_SPARK_MASTER="local[2]",
               PIPELINE_MAX_OFFSETS_PER_TRIGGER="150", PIPELINE_TRIGGER_SECONDS="1", PIPELINE_LOG_LEVEL="INFO",
               CONSUMER_FIXTURE_TOPICS=f"{metrics},{workorder}")
    log = tmp_path / "consume.log"
    tables = [out / metrics, out / workorder]

    # 1. the writer pauses after publishing; SIGKILL (Python and JVM) lands between "published" and "committed"
    proc = _consume_cmd(dict(env, CONSUMER_FIXTURE_PAUSE="60"), log, "--bounded")
    _wait_for(lambda: any(list(t.glob("batch-*.parquet")) for t in tables if t.is_dir()), proc, log, 240,
              "the first published batch")
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    published = [t for t in tables if list(t.glob("batch-*.parquet"))]
    cp = checkpoints / "fixture-parquet" / published[0].name
    assert (cp / "offsets" / "0").is_file() and not (cp / "commits" / "0").exists()  # batch 0 must be replayed
    assert len(offsets_of(published[0])) < n

    # 2. restart, bounded: the replay overwrites batch 0, the rest follows, nothing is counted twice
    proc = _consume_cmd(env, log, "--bounded")
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert_exact(out / metrics, sent[metrics])
    assert_exact(out / workorder, sent[workorder])
    quarantine = pq.read_table(out / f"{metrics}_quarantine").to_pylist()
    assert {(q["kafka_partition"], q["kafka_offset"]) for q in quarantine} == sent["bad"]
    assert f"{metrics}: " in log.read_text() and "finished after" in log.read_text()

    # 3. continuous mode picks up new records; SIGTERM stops the queries and prints the summary
    more = produce(settings, metrics, workorder, 300, start=n)
    proc = _consume_cmd(env, log)
    expected = {metrics: sent[metrics] | more[metrics], workorder: sent[workorder] | more[workorder]}
    _wait_for(lambda: all(len(offsets_of(out / t)) >= len(expected[t]) for t in expected), proc, log, 240,
              "the new records")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=90) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "SIGTERM received" in text and "(continuous) stopped after" in text
    for topic, offsets in expected.items():
        assert_exact(out / topic, offsets)


def _send_per_partition(settings, topic: str, per_partition: int, start: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=10)
    for partition in range(3):
        for i in range(start + partition * per_partition, start + (partition + 1) * per_partition):
            value = {"id": i, "time": _time(i), "val": i / 4}
            producer.send(topic, partition=partition, value=json.dumps(value).encode())
    producer.flush()
    producer.close()


def test_a_topic_recreated_under_the_checkpoint_stops_the_consumer_with_the_remedy(spark, settings):
    """The issue's example: 300 records consumed, topic deleted and recreated with 600, consume again."""
    from framework.errors import ConsumerError

    topic = f"rec-{uuid.uuid4().hex[:8]}"
    cls = type("ItRecreated", (ConsumerSparkABC,), {"name": "it-recreated", "topics": [topic],
                                                    "writer": ParquetWriter(), "schema": METRICS_SCHEMA})
    try:
        with KafkaAdmin(settings) as admin:
            admin.create_topic(topic, partitions=3)
            _send_per_partition(settings, topic, 100, 0)
            with cls(settings, spark=spark) as consumer:
                assert consumer.run(mode="bounded").rows_written == 300
            old = admin.topic_id(topic)
            assert old
            admin.delete_topic(topic)
            deadline = time.monotonic() + 60
            while True:  # deletion is asynchronous: the name may still answer with the old id for a while
                try:
                    admin.create_topic(topic, partitions=3)
                    if admin.topic_id(topic) not in (None, old):
                        break
                except Exception:  # noqa: BLE001 - the topic is being deleted; try again
                    pass
                assert time.monotonic() < deadline, "the topic was not recreated within 60 s"
                time.sleep(0.5)
            _send_per_partition(settings, topic, 200, 1000)
        with cls(settings, spark=spark) as consumer, pytest.raises(ConsumerError) as err:
            consumer.run(mode="bounded")
        message = str(err.value)
        assert f"Topic '{topic}' was deleted and recreated" in message and "delete " in message
        assert offsets_of(settings.output_dir / topic).__len__() == 300  # nothing written, nothing skipped
        fresh = settings.replace(output_dir=settings.output_dir.parent / "new-output",
                                 checkpoint_dir=settings.output_dir.parent / "new-checkpoints")
        with cls(fresh, spark=spark) as consumer:  # the remedy the sentence gives: a new checkpoint
            again = consumer.run(mode="bounded")
        assert again.rows_written == 600 and again.topics[topic].lag == 0
    finally:
        CONSUMERS.unregister("it-recreated")
