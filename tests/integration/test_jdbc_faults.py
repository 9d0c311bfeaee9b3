"""SIGKILL of a JDBC consumer inside a batch, before and after the PostgreSQL commit: every record applied once.

Three trials on one topic, each killing the consumer twice: with batch ``2t+1``
staged but not committed, then with batch ``2t+2`` committed in PostgreSQL but
not in Spark's checkpoint (each restart replays the batch it was killed in).
A last run finishes; the table must then hold each Kafka record exactly once
(recounted from Kafka) and the upserted aggregates must equal a GROUP BY over
the table.
"""
from __future__ import annotations

import json
import signal
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framework.admin import KafkaAdmin
from tests.integration.pipeline_procs import Proc, pipeline_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(3600)]

N = 480
PER_TRIGGER = 60  # 8 batches of valid rows (+ the malformed record)
TRIALS = 3


def _recount(bootstrap: str, topic: str) -> dict[tuple[int, int], bytes]:
    """Every record of ``topic`` read back from Kafka: {(partition, offset): value}."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    got: dict[tuple[int, int], bytes] = {}
    while any(consumer.position(tp) < end[tp] for tp in parts):
        for _tp, records in consumer.poll(timeout_ms=1000).items():
            got.update({(r.partition, r.offset): r.value for r in records})
    consumer.close()
    return got


def test_sigkill_before_and_after_the_commit_three_trials_leave_every_record_applied_once(kafka_broker, local_postgres,
                                                                                        tmp_path):
    suffix = uuid.uuid4().hex[:6]
    topic, table = f"jdbc-kill-{suffix}", f"kill_{suffix}"
    with KafkaAdmin(bootstrap_servers=kafka_broker.bootstrap_servers) as admin:
        admin.create_topic(topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    for i in range(N):
        record = {"id": i, "zone": "Z" + str(i % 4), "qty": i % 9, "time": f"2026-02-0{1 + i % 5}T10:00:00Z"}
        producer.send(topic, key=str(i).encode(), value=json.dumps(record).encode())
    producer.send(topic, value=b"not json")
    producer.flush()
    producer.close()

    env = pipeline_env(kafka_bootstrap_servers=kafka_broker.bootstrap_servers, postgres_url=local_postgres.url,
                       checkpoint_dir=tmp_path / "checkpoints", output_dir=tmp_path / "out",
                       state_dir=tmp_path / "state", max_offsets_per_trigger=PER_TRIGGER)
    env.update(JDBC_FIXTURE_TOPIC=topic, JDBC_FIXTURE_TABLE=table, JDBC_FIXTURE_MARKERS=str(tmp_path / "markers"))
    args = ["jdbc-fixture", "--module", "tests.integration.jdbc_fixtures", "--bounded"]
    points = [p for t in range(TRIALS) for p in (f"staged:{2 * t + 1}", f"applied:{2 * t + 2}")]
    procs: list[Proc] = []
    try:
        for n, point in enumerate(points):
            proc = Proc(f"consumer-{n}", "consume_cmd.py", args, {**env, "JDBC_FIXTURE_PAUSE_AT": point},
                        tmp_path / "consumer.log")
            procs.append(proc)
            marker = tmp_path / "markers" / point.replace(":", "-")
            wait_until(marker.exists, 600, f"the consumer to reach {point}", [proc])
            assert proc.kill() == -signal.SIGKILL
        final = Proc("consumer-final", "consume_cmd.py", args, env, tmp_path / "consumer.log")
        procs.append(final)
        assert final.wait(900) == 0, final.describe()
    finally:
        for proc in procs:
            proc.cleanup()

    kafka = _recount(kafka_broker.bootstrap_servers, topic)
    good = {k: json.loads(v) for k, v in kafka.items() if v != b"not json"}
    with local_postgres.target.connect() as conn:
        rows = conn.execute(f"SELECT kafka_partition, kafka_offset, id, zone, qty FROM {table}").fetchall()
        assert len(rows) == len(good) == N  # nothing duplicated
        assert {(p, o): (i, z, q) for p, o, i, z, q in rows} == {
            k: (r["id"], r["zone"], r["qty"]) for k, r in good.items()}  # nothing lost, every value exact
        assert conn.execute(f"SELECT count(*) FROM {table}_quarantine").fetchone()[0] == len(kafka) - N
        zone = conn.execute(f"SELECT zone, n, qty, last FROM {table}_per_zone ORDER BY zone").fetchall()
        assert zone == conn.execute(f"SELECT zone, count(*), sum(qty), max(time) FROM {table} GROUP BY zone "
                                    "ORDER BY zone").fetchall()
        day = conn.execute(f"SELECT day, n FROM {table}_per_day ORDER BY day").fetchall()
        assert day == conn.execute(f"SELECT (time AT TIME ZONE 'UTC')::date, count(*) FROM {table} GROUP BY 1 "
                                   "ORDER BY 1").fetchall()
        assert sum(n for _, n in day) == N
        ledger = conn.execute("SELECT batch_id FROM pipeline_jdbc_ledger WHERE consumer = 'jdbc-fixture' AND "
                              "target = %s ORDER BY 1", (f"{topic}/{table}",)).fetchall()
        assert [b for (b,) in ledger] == list(range(len(ledger))) and len(ledger) >= N // PER_TRIGGER
