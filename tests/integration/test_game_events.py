"""The game end to end: API served in a thread -> real Kafka broker -> routing consumer on a real Spark -> SQL."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
import requests
from kafka import KafkaProducer

from apps.api import serve_in_thread
from apps.game_api import KEY_FIELD, create_game_app
from apps.game_consumers import GameEventsConsumer
from apps.game_load import LoadGenerator, LoadPlan
from framework.commands.query import register_tables
from framework.consumer.base import CONSUMERS
from framework.producer.event_log import KafkaEventLog
from framework.sinks import ParquetWriter

pytestmark = pytest.mark.integration

REQUESTS = [("/purchase_a_sword", 7), ("/purchase_a_shield", 5), ("/purchase_an_axe", 3), ("/purchase_a_potion", 4),
            ("/join_guild?guild=the-knights", 4), ("/join_guild?guild=the-rangers", 2), ("/declare_war", 2),
            ("/declare_peace", 3), ("/", 2)]
LOAD_MIX = {"sword": 1, "join": 1, "war": 1, "visit": 1}
STAMP = "2026-01-05T08:00:00.000Z"
MALFORMED = {
    b"not json at all": "not valid JSON",
    json.dumps({"event_type": "dance", "timestamp": STAMP}).encode(): "unknown event_type 'dance'",
    json.dumps({"timestamp": STAMP, "item": "sword"}).encode(): "missing required field 'event_type'",
    json.dumps({"event_type": "purchase_sword", "timestamp": STAMP, "item": "sword", "strength": "strong"}).encode():
        "field 'strength' expected decimal(4,2) (a number in plain notation with at most 2 decimal places and 2 "
        "integer digits), got \"strong\"",
    json.dumps({"event_type": "purchase_axe", "timestamp": STAMP, "item": "axe", "strength": 2.505}).encode():
        "field 'strength' expected decimal(4,2) (a number in plain notation with at most 2 decimal places and 2 "
        "integer digits), got 2.505",
}


@pytest.fixture
def game_topic(settings):
    """A fresh topic, and a subclass of the shipped consumer reading it (unregistered afterwards)."""
    suffix = uuid.uuid4().hex[:8]
    topic = f"it-events-{suffix}"
    cls = type("ItGameEvents", (GameEventsConsumer,), {
        "name": f"it-events-{suffix}", "topics": [topic], "writer": ParquetWriter(tables={topic: "events"})})
    yield topic, cls
    CONSUMERS.unregister(cls.name)


def test_game_events_are_acknowledged_routed_into_tables_and_queryable(spark, settings, game_topic):
    topic, consumer_cls = game_topic
    event_log = KafkaEventLog(settings, topic, key_field=KEY_FIELD)
    server = serve_in_thread(create_game_app(settings, event_log=event_log), "127.0.0.1", 0)
    stored: set[tuple[int, int]] = set()
    strengths: list[float] = []  # as the API answered them to this player
    try:
        with requests.Session() as player:
            player.headers["User-Agent"] = "it-player/1.0"
            for path, times in REQUESTS:
                for _ in range(times):
                    response = player.get(server.url + path, timeout=30)
                    assert response.status_code == 200, response.text
                    logged = response.json()["logged"]
                    assert logged["topic"] == topic
                    stored.add((logged["partition"], logged["offset"]))
                    if "strength" in response.json()["event"]:
                        strengths.append(response.json()["event"]["strength"])
        report = LoadGenerator(LoadPlan(base_url=server.url, players=4, rate=0, duration=120, requests=40,
                                        mix=LOAD_MIX, guilds=("the-knights", "the-rangers", "the-mages"))).run()
    finally:
        server.stop()
        event_log.close()
    assert len(stored) == sum(times for _, times in REQUESTS)  # each answer names its own stored record
    assert (report.requests, report.errors) == (40, 0)
    assert report.ok == Counter({"sword": 10, "join": 10, "war": 10, "visit": 10})

    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for value in MALFORMED:
        producer.send(topic, value=value)
    producer.flush()
    producer.close()

    with consumer_cls(settings, spark=spark) as consumer:
        summary = consumer.run(mode="bounded")
        assert summary.tables == {"purchases": 19 + 10, "joins": 6 + 10, "declarations": 5 + 10,
                                         "visits": 2 + 10}
    events = summary.topics[topic]
    assert (events.rows_written, events.rows_quarantined, events.lag) == (72, len(MALFORMED), 0)

    out = settings.output_dir
    tables = {name: pq.read_table(out / name).to_pylist() for name in ("purchases", "joins", "declarations",
                                                                        "visits")}
    assert {name: len(rows) for name, rows in tables.items()} == {"purchases": 29, "joins": 16, "declarations": 15,
                                                                  "visits": 12}
    assert not (out / topic).exists()
    offsets = [(r["kafka_partition"], r["kafka_offset"]) for rows in tables.values() for r in rows]
    assert len(offsets) == len(set(offsets)) == 72 and stored <= set(offsets)  # exactly once, nothing lost
    purchases = tables["purchases"]
    assert Counter(r["item"] for r in purchases) == Counter({"sword": 7 + 10, "shield": 5, "axe": 3, "potion": 4})
    assert all(0 <= r["strength"] <= 10 and r["item"] in r["description"] for r in purchases)
    assert {r["host"] for r in purchases} == {f"127.0.0.1:{server.port}"}
    mine = [r for r in purchases if r["user_agent"] == "it-player/1.0"]
    assert len(mine) == 19 and {r["kafka_key"] for r in mine} == {"it-player/1.0"}
    # strength DECIMAL(4,2): exactly the number each answer showed, two decimals kept ("2.60")
    assert sorted(r["strength"] for r in mine) == sorted(Decimal(repr(s)).quantize(Decimal("0.01")) for s in strengths)
    assert {r["strength"].as_tuple().exponent for r in purchases} == {-2}
    assert Counter(r["event_type"] for r in tables["declarations"]) == Counter({"declare_war": 12,
                                                                               "declare_peace": 3})

    quarantine = pq.read_table(out / "events_quarantine").to_pylist()
    assert {q["raw_value"].encode(): q["reason"] for q in quarantine} == MALFORMED
    assert {q["kafka_topic"] for q in quarantine} == {topic}

    register_tables(spark, out)
    joins = spark.sql("SELECT guild, count(*) AS joins FROM joins GROUP BY guild ORDER BY guild").collect()
    assert [tuple(r) for r in joins] == [("the-knights", 4 + 4), ("the-mages", 3), ("the-rangers", 2 + 3)]
    items = spark.sql("SELECT item, count(*) AS n, round(avg(strength), 2) AS avg_strength FROM purchases "
                      "GROUP BY item ORDER BY item").collect()
    assert [(r["item"], r["n"]) for r in items] == [("axe", 3), ("potion", 4), ("shield", 5), ("sword", 17)]
    assert all(0 <= r["avg_strength"] <= 10 for r in items)
    reasons = spark.sql("SELECT reason FROM events_quarantine ORDER BY reason").collect()
    assert [r["reason"] for r in reasons] == sorted(MALFORMED.values())

    with consumer_cls(settings, spark=spark) as consumer:  # again: nothing new, nothing doubled
        again = consumer.run(mode="bounded")
    assert (again.rows_written, again.rows_quarantined, again.topics[topic].lag) == (0, 0, 0)
    assert pq.read_table(out / "purchases").num_rows == 29
