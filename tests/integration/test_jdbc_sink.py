"""The JDBC sink against the real local PostgreSQL, Spark and Kafka: exact rows, upserts, aggregates, bad input."""
from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import pytest
from kafka import KafkaProducer

from framework.admin import KafkaAdmin
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.errors import FrameworkError
from framework.local.kafka_broker import free_port
from framework.sinks.aggregates import Aggregation, count, max_, min_, sum_
from framework.sinks.jdbc import PostgresWriter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SCHEMA = "id BIGINT NOT NULL, zone STRING, qty DECIMAL(10,2), time TIMESTAMP"
MALFORMED = [b"not json", b'{"zone": "A"}', b'{"id": "x"}']


def _record(i: int, version: int = 0) -> dict:
    zone = None if i % 17 == 0 else "ABC"[i % 3]
    return {"id": i, "zone": zone, "qty": f"{(i % 7) + version}.25",
            "time": f"2026-01-0{1 + i % 3}T0{i % 10}:00:0{i % 6}.123456Z"}


def _send(settings, topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> set[tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    futures = [producer.send(topic, key=(keys[i] if keys else None), value=v) for i, v in enumerate(values)]
    producer.flush()
    producer.close()
    return {(md.partition, md.offset) for md in (f.get(timeout=30) for f in futures)}


def _topic(settings, prefix: str) -> str:
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with KafkaAdmin(settings) as admin:
        admin.create_topic(topic, partitions=2)
    return topic


@pytest.fixture
def declare(local_postgres):
    names = []

    def make(name: str, topic: str, writer, schema=SCHEMA):
        cls = type("ItJdbcConsumer", (ConsumerSparkABC,), {
            "name": name, "topics": [topic], "schema": schema, "writer": writer})
        names.append(name)
        return cls
    yield make
    for name in names:
        CONSUMERS.unregister(name)


def _aggs(s: str) -> list[Aggregation]:
    return [Aggregation(f"agg_zone_{s}", ["zone"], {"n": count(), "qty": sum_("qty"), "first": min_("time"),
                                                    "last": max_("time")}),
            Aggregation(f"agg_day_{s}", {"day": "to_date(time)"}, {"n": count()}, where="qty > 1")]


def test_append_with_aggregates_is_exact_and_a_rerun_adds_nothing(spark, settings, local_postgres, declare):
    topic, s = _topic(settings, "jdbc"), uuid.uuid4().hex[:6]
    n = 700
    sent = _send(settings, topic, [json.dumps(_record(i)).encode() for i in range(n)])
    bad = _send(settings, topic, MALFORMED)
    table = f"rows_{s}"
    writer = PostgresWriter(table, aggregations=_aggs(s), url=local_postgres.url)
    cls = declare(f"jdbc-{s}", topic, writer)
    with cls(settings, spark=spark, max_offsets_per_trigger=250) as consumer:
        summary = consumer.run(mode="bounded")
    assert (summary.topics[topic].rows_written, summary.topics[topic].rows_quarantined) == (n, len(MALFORMED))
    assert summary.topics[topic].batches >= 3

    with local_postgres.target.connect() as conn:
        got = conn.execute(f"SELECT kafka_partition, kafka_offset FROM {table}").fetchall()
        assert len(got) == n and set(got) == sent
        row = conn.execute(f"SELECT id, zone, qty, time FROM {table} WHERE id = 5").fetchone()
        assert row[:3] == (5, "C", Decimal("5.25")) and row[3].isoformat() == "2026-01-03T05:00:05.123456+00:00"
        cols = conn.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                            "WHERE table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
        assert cols[:4] + cols[5:7] == [("id", "bigint", "NO"), ("zone", "text", "YES"), ("qty", "numeric", "YES"),
                                        ("time", "timestamp with time zone", "YES"),
                                        ("kafka_partition", "integer", "NO"), ("kafka_offset", "bigint", "NO")]
        quarantined = conn.execute(
            f"SELECT raw_value, kafka_partition, kafka_offset FROM {table}_quarantine").fetchall()
        assert {(p, o) for _, p, o in quarantined} == bad
        assert sorted(r for r, _, _ in quarantined) == sorted(v.decode() for v in MALFORMED)
        _assert_aggregates_equal_group_by(conn, table, s)
        ledger = conn.execute("SELECT count(*), sum(rows) FROM pipeline_jdbc_ledger WHERE consumer = %s "
                              "AND target = %s", (f"jdbc-{s}", f"{topic}/{table}")).fetchone()
        assert ledger == (summary.topics[topic].batches, n)
        health = conn.execute("SELECT rows, quarantined FROM pipeline_jdbc_health WHERE consumer = %s",
                              (f"jdbc-{s}",)).fetchone()
        assert health == (n, len(MALFORMED))

    with cls(settings, spark=spark) as consumer:
        again = consumer.run(mode="bounded")
    assert again.rows_written == 0
    with local_postgres.target.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == n
        _assert_aggregates_equal_group_by(conn, table, s)


def _assert_aggregates_equal_group_by(conn, table: str, s: str) -> None:
    zone = conn.execute(f"SELECT zone, n, qty, first, last FROM agg_zone_{s} ORDER BY zone NULLS FIRST").fetchall()
    expected = conn.execute(f"SELECT zone, count(*), sum(qty), min(time), max(time) FROM {table} "
                            "GROUP BY zone ORDER BY zone NULLS FIRST").fetchall()
    assert zone == expected and len(zone) == 4  # A, B, C and the NULL zone
    day = conn.execute(f"SELECT day, n FROM agg_day_{s} ORDER BY day").fetchall()
    assert day == conn.execute(f"SELECT (time AT TIME ZONE 'UTC')::date, count(*) FROM {table} WHERE qty > 1 "
                               "GROUP BY 1 ORDER BY 1").fetchall()


def test_upsert_keeps_the_last_row_of_each_key(spark, settings, local_postgres, declare):
    topic, s = _topic(settings, "jdbc-up"), uuid.uuid4().hex[:6]
    values, keys = [], []
    for version in range(3):
        for i in range(40):
            values.append(json.dumps(_record(i, version)).encode())
            keys.append(str(i).encode())
    _send(settings, topic, values, keys)
    table = f"up_{s}"
    cls = declare(f"jdbc-up-{s}", topic, PostgresWriter(table, insert_mode="upsert", pk_fields=["id"],
                                                         url=local_postgres.url))
    with cls(settings, spark=spark, max_offsets_per_trigger=50) as consumer:
        consumer.run(mode="bounded")
    with local_postgres.target.connect() as conn:
        rows = dict(conn.execute(f"SELECT id, qty FROM {table}").fetchall())
        pk = conn.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                          "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                          (table,)).fetchall()
    assert rows == {i: Decimal(f"{(i % 7) + 2}.25") for i in range(40)}
    assert pk == [("id",)]


def test_bad_declarations_and_tables_are_one_sentence_errors(spark, settings, local_postgres, declare):
    topic, s = _topic(settings, "jdbc-bad"), uuid.uuid4().hex[:6]
    _send(settings, topic, [json.dumps(_record(i)).encode() for i in range(10)])
    table = f"owned_{s}"
    first = declare(f"owner-{s}", topic, PostgresWriter(table, url=local_postgres.url))
    with first(settings, spark=spark) as consumer:
        consumer.run(mode="bounded")

    other = declare(f"other-{s}", topic, PostgresWriter(table, url=local_postgres.url))
    with pytest.raises(FrameworkError, match=f"Table '{table}' .* is written by consumer 'owner-{s}', not 'other-{s}'"):
        with other(settings, spark=spark) as consumer:
            consumer.run(mode="bounded")

    nokey = declare(f"nokey-{s}", topic, PostgresWriter(f"nokey_{s}", insert_mode="upsert", pk_fields=["order_id"],
                                                        url=local_postgres.url))
    with pytest.raises(FrameworkError, match="Key column .order_id. of PostgresWriter is not among the rows of topic"):
        with nokey(settings, spark=spark) as consumer:
            consumer.run(mode="bounded")

    with local_postgres.target.connect() as conn:  # the table changed under the consumer: refused before writing
        conn.execute(f"CREATE TABLE changed_{s} (id text, zone text)")
        conn.commit()
    changed = declare(f"changed-{s}", topic, PostgresWriter(f"changed_{s}", url=local_postgres.url))
    with pytest.raises(FrameworkError, match=f"Column 'id' of table 'changed_{s}' is text but the batch has bigint"):
        with changed(settings, spark=spark) as consumer:
            consumer.run(mode="bounded")
    with local_postgres.target.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM changed_{s}").fetchone()[0] == 0


def test_unreachable_postgres_fails_within_30s_and_commits_nothing(spark, settings, local_postgres, declare):
    topic, s = _topic(settings, "jdbc-down"), uuid.uuid4().hex[:6]
    _send(settings, topic, [json.dumps(_record(i)).encode() for i in range(10)])
    url = f"postgresql://pipeline:x@127.0.0.1:{free_port()}/pipeline"
    cls = declare(f"down-{s}", topic, PostgresWriter(f"down_{s}", url=url))
    t0 = time.monotonic()
    with pytest.raises(FrameworkError, match="cannot be reached .* start it"):
        with cls(settings, spark=spark) as consumer:
            consumer.run(mode="bounded")
    assert time.monotonic() - t0 < 30
    commits = settings.checkpoint_root / f"down-{s}" / topic / "commits"
    assert not commits.is_dir() or not any(p.name.isdigit() for p in commits.iterdir())
