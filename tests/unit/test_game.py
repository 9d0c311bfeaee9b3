"""The game on the framework, without a broker: API, event log, load generator, routing consumer."""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
import time
from collections import Counter
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from kafka.errors import KafkaTimeoutError, NotEnoughReplicasError
from pyspark.sql.types import IntegerType, StringType, StructField, StructType

from apps.game_api import ACTIONS, EVENT_TYPES, ITEMS, create_game_app, describe_item, draw_strength
from apps.game_consumers import GameEventsConsumer
from apps.game_load import (DEFAULT_GUILDS, DEFAULT_MIX, LoadGenerator, LoadPlan, LoadPlanError, TicketSequence,
                            parse_mix)
from framework.commands.query import register_tables
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.errors import DeclarationError, EventLogError
from framework.producer.event_log import InMemoryEventLog, KafkaEventLog, _producer_config
from framework.local.kafka_broker import free_port
from framework.consumer.parsing import METADATA_COLUMNS, QUARANTINE_COLUMNS
from framework.settings import Settings
from framework.testing.consumer import RecordingWriter, parse_values, run_batch
from framework.testing.producer import FakeAdmin, InMemoryKafka, RecordingProducer
from framework.sinks import MARKER, ParquetWriter


pytestmark = pytest.mark.usefixtures("restore_consumer_registry")


class FixedRng:
    """A random.Random stand-in whose normal draws are given."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def normalvariate(self, mu: float, sigma: float) -> float:
        return self.values.pop(0)


def game(event_log=None, rng=None):
    log = event_log if event_log is not None else InMemoryEventLog()
    return create_game_app(event_log=log, rng=rng or random.Random(3)).test_client(), log


PLAYER = {"User-Agent": "pytest-player/1.0", "Host": "game.example:5001"}

# ============================================================================ game API
@pytest.mark.parametrize("path, event_type, extra", [
    ("/", "visit", {}),
    ("/purchase_a_sword", "purchase_sword", {"item": "sword"}),
    ("/purchase_a_shield", "purchase_shield", {"item": "shield"}),
    ("/purchase_an_axe", "purchase_axe", {"item": "axe"}),
    ("/purchase_a_potion", "purchase_potion", {"item": "potion"}),
    ("/join_guild", "join_guild", {"guild": "the-knights"}),
    ("/join_guild?guild=the-rangers", "join_guild", {"guild": "the-rangers"}),
    ("/declare_war", "declare_war", {}),
    ("/declare_peace", "declare_peace", {}),
])
def test_every_action_answers_json_and_logs_one_event(path, event_type, extra):
    client, log = game()
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    response = client.get(path, headers=PLAYER)
    assert response.status_code == 200
    body = response.get_json()
    assert body["message"] and body["logged"] == {"topic": "events", "partition": 0, "offset": 0}
    assert len(log.events) == 1
    event = log.events[0]
    assert body["event"] == event
    assert event["event_type"] == event_type
    assert (event["host"], event["user_agent"]) == ("game.example:5001", "pytest-player/1.0")
    assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == len("2026-01-05T08:00:00.123Z")
    stamp = dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert before <= stamp <= dt.datetime.now(dt.timezone.utc)
    assert {k: event[k] for k in extra} == extra
    common = {"event_type", "timestamp", "host", "user_agent"}
    if event_type.startswith("purchase_"):
        assert set(event) == common | {"item", "strength", "description"}
        assert 0 <= event["strength"] <= 10 and event["item"] in event["description"].replace("healing ", "")
    else:
        assert set(event) == common | set(extra)


def test_strength_is_normal_5_4_clipped_to_0_10():
    assert [draw_strength(FixedRng(v)) for v in (-3.2, 14.0, 5.5, 0.0, 10.0, 7.4321)] == [0.0, 10.0, 5.5, 0.0,
                                                                                          10.0, 7.43]
    rng = random.Random(11)
    draws = [draw_strength(rng) for _ in range(4000)]
    assert min(draws) == 0.0 and max(draws) == 10.0  # clipped, not resampled: ~11% at each bound
    assert 0.07 < draws.count(0.0) / len(draws) < 0.15 and 0.07 < draws.count(10.0) / len(draws) < 0.15
    assert 4.7 < sum(draws) / len(draws) < 5.3
    client, log = game(rng=FixedRng(-1.0, 99.0))
    client.get("/purchase_a_sword")
    client.get("/purchase_an_axe")
    assert [(e["strength"], e["description"]) for e in log.events] == [
        (0.0, "a flimsy steel sword"), (10.0, "a legendary battle axe")]
    assert describe_item(ITEMS[0], 7.9) == "a fine steel sword"


#: every strength the API can draw: 0.00..10.00 in steps of 0.01
ALL_STRENGTHS = [Decimal(k).scaleb(-2) for k in range(1001)]


def test_every_strength_the_api_can_draw_is_a_json_number_that_fits_decimal_4_2():
    # each hundredth, hit from below, exactly and from above (ties of the third decimal excluded: round() is
    # binary), and the clipped draws: the JSON text is always the two-decimal number itself
    nudges = (Decimal("-0.0049"), Decimal(0), Decimal("0.0049"))
    draws = [float(d + n) for d in ALL_STRENGTHS for n in nudges] + [-0.004, -7.5, 10.004, 1e9]
    texts = {json.dumps(draw_strength(FixedRng(v))) for v in draws}
    assert all(re.fullmatch(r"(10|\d)\.\d\d?", t) for t in texts), sorted(texts)[:5]
    assert sorted(Decimal(t) for t in texts) == ALL_STRENGTHS


def test_a_bad_guild_is_a_400_that_logs_nothing():
    client, log = game()
    assert client.get("/join_guild?guild=The Night Watch 2").get_json()["event"]["guild"] == "The Night Watch 2"
    for bad in ("", " lead", "x" * 65, "a/b", "<script>"):
        response = client.get("/join_guild", query_string={"guild": bad})
        assert response.status_code == 400, bad
        assert response.get_json()["error"].startswith(f"guild={bad!r} is not valid; use 1 to 64 letters")
    assert len(log.events) == 1


def test_the_answer_is_503_with_a_clear_body_when_the_event_is_not_logged():
    sentence = ("The event was not logged: Kafka at 127.0.0.1:9092 did not acknowledge it within 10 s; "
                "the broker may be down or overloaded, try again later.")
    client, log = game(InMemoryEventLog(fail=sentence))
    response = client.get("/purchase_a_shield", headers=PLAYER)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json() == {
        "error": f"Your purchase of a shield could not be recorded, so it did not happen: {sentence}",
        "event_type": "purchase_shield", "logged": False}
    response = client.get("/join_guild?guild=the-mages")
    assert response.status_code == 503 and "Your joining of the-mages could not be recorded" in \
        response.get_json()["error"]
    assert log.events == []


def test_unknown_paths_list_the_actions():
    client, _ = game()
    response = client.get("/buy_a_dragon")
    assert response.status_code == 404
    assert response.get_json()["error"].startswith("No action at GET '/buy_a_dragon'; actions (GET): /, ")
    assert client.post("/purchase_a_sword").status_code == 405


def test_the_default_event_log_connects_on_first_request_and_answers_503_without_a_broker():
    settings = Settings.from_env().replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    app = create_game_app(settings)  # no I/O here
    log = app.extensions["game"].event_log
    assert isinstance(log, KafkaEventLog) and log.key_field == "user_agent" and log._clients.current is None
    started = time.monotonic()
    response = app.test_client().get("/purchase_a_potion")
    assert response.status_code == 503 and time.monotonic() - started < 10
    assert "No Kafka broker accepts connections at 127.0.0.1:" in response.get_json()["error"]
    log.close()


def test_every_event_type_of_the_api_is_routed_by_the_consumer():
    assert set(EVENT_TYPES) == set(GameEventsConsumer.routes)
    assert set(ACTIONS) == {"/", *(i.path for i in ITEMS), "/join_guild", "/declare_war", "/declare_peace"}


# ============================================================================ KafkaEventLog
def event_log(kafka: InMemoryKafka | None = None, **options):
    kafka = kafka or InMemoryKafka(default_partitions=1)
    options.setdefault("producer_factory", kafka.producer)
    return KafkaEventLog(Settings.from_env(), "events", admin=FakeAdmin(kafka), **options), kafka


def test_log_creates_the_topic_once_sends_json_with_the_key_and_returns_the_offset():
    kafka = InMemoryKafka(default_partitions=1)
    log, _ = event_log(kafka, key_field="user")
    assert kafka.topics == {} and kafka.producers == []  # nothing before the first event
    assert log.log({"user": "ann", "n": 1}) == (0, 0)
    assert log.log({"user": None, "n": 2}) == (0, 1)
    assert log.log({"user": 7, "n": 3}) == (0, 2)
    assert kafka.topics == {"events": 1} and len(kafka.producers) == 1
    assert [(m.key, m.json()) for m in kafka.messages("events")] == [
        (b"ann", {"user": "ann", "n": 1}), (None, {"user": None, "n": 2}), (b"7", {"user": 7, "n": 3})]


def test_log_blocks_until_kafka_acknowledged_the_event():
    producer = RecordingProducer(auto_ack=False)
    log, _ = event_log(producer_factory=lambda: producer, timeout=20)
    result: list = []
    worker = threading.Thread(target=lambda: result.append(log.log({"a": 1})))
    worker.start()
    time.sleep(0.4)
    assert worker.is_alive() and result == [] and len(producer.messages) == 1  # sent, not acknowledged yet
    producer.flush()  # the broker acknowledges
    worker.join(5)
    assert result == [(0, -1)]


def test_log_is_bounded_and_maps_every_failure_to_one_sentence():
    log, _ = event_log(producer_factory=lambda: RecordingProducer(auto_ack=False), timeout=0.3)
    started = time.monotonic()
    with pytest.raises(EventLogError, match=r"did not acknowledge it within 0.3 s; the broker may be down"):
        log.log({"a": 1})
    assert time.monotonic() - started < 2

    for error, message in [(KafkaTimeoutError("Batch expired"), r"within 10 s \(KafkaTimeoutError\)"),
                           (NotEnoughReplicasError("only 1 in sync"),
                            r"refused or lost it \(NotEnoughReplicasError: .*only 1 in sync")]:
        log, _ = event_log(producer_factory=lambda e=error: RecordingProducer(fail=lambda m: e))
        with pytest.raises(EventLogError, match=r"^The event was not logged: Kafka at .* " + message):
            log.log({"a": 1})

    log, _ = event_log(key_field="user")
    with pytest.raises(EventLogError, match=r"it has no field 'user', the key field of the event log"):
        log.log({"a": 1})
    with pytest.raises(EventLogError, match=r"it is not JSON-serializable"):
        log.log({"user": "x", "when": object()})
    with pytest.raises(EventLogError, match=r"An event must be a dict"):
        log.log(["not", "a", "dict"])
    with pytest.raises(EventLogError, match=r"timeout=0 is not valid"):
        KafkaEventLog(Settings.from_env(), "events", timeout=0)


def test_a_broken_producer_is_replaced_by_the_next_event():
    kafka = InMemoryKafka(default_partitions=1)
    log, _ = event_log(kafka)
    assert log.log({"n": 1}) == (0, 0)
    kafka.producers[0].closed = True  # send() now raises, like a closed KafkaProducer
    with pytest.raises(EventLogError, match=r"refused or lost it \(RuntimeError: RecordingProducer already closed"):
        log.log({"n": 2})
    assert log.log({"n": 3}) == (0, 1) and len(kafka.producers) == 2


def test_one_producer_serves_concurrent_threads_and_close_is_final():
    kafka = InMemoryKafka(default_partitions=1)
    builds = Counter()

    def factory():
        builds["n"] += 1
        time.sleep(0.05)  # slow to build: the other threads wait for this one
        return kafka.producer()

    log, _ = event_log(kafka, producer_factory=factory)
    results: list = []
    lock = threading.Lock()

    def player(i: int) -> None:
        for j in range(25):
            offset = log.log({"player": i, "j": j})
            with lock:
                results.append(offset)

    threads = [threading.Thread(target=player, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert builds["n"] == 1 and len(results) == 200 and len(set(results)) == 200
    assert len(kafka.messages("events")) == 200
    log.close()
    assert kafka.producers[0].closed and log.closed
    with pytest.raises(EventLogError, match="The event log of topic 'events' is closed"):
        log.log({"n": 1})
    injected = RecordingProducer()
    log, _ = event_log(producer=injected)
    log.log({"n": 1})
    log.close()
    assert not injected.closed  # injected clients belong to the caller


def test_producer_config_bounds_every_wait():
    config = _producer_config(2.5, None)
    assert config["linger_ms"] == 0 and config["max_block_ms"] == config["request_timeout_ms"] == 2500
    assert config["delivery_timeout_ms"] >= config["linger_ms"] + config["request_timeout_ms"]
    tuned = _producer_config(2.5, {"linger_ms": 5})
    assert tuned["delivery_timeout_ms"] == 2505


# ============================================================================ load generator
class FakeResponse:
    def __init__(self, status: int, body: dict) -> None:
        self.status_code = status
        self.body = body
        self.text = json.dumps(body)

    def json(self) -> dict:
        return self.body


class FakeSession:
    """Records every GET; ``answer(url, params) -> FakeResponse`` (or raises)."""

    created: list["FakeSession"] = []

    def __init__(self, answer=None) -> None:
        self.headers: dict[str, str] = {}
        self.calls: list[tuple[str, dict | None, str]] = []
        self.closed = False
        self.answer = answer or (lambda url, params: FakeResponse(200, {"message": "ok"}))
        FakeSession.created.append(self)

    def get(self, url, params=None, timeout=None, allow_redirects=True):
        assert timeout and allow_redirects is False
        self.calls.append((url, params, self.headers.get("User-Agent", "")))
        return self.answer(url, params)

    def close(self) -> None:
        self.closed = True


def run_load(answer=None, **plan) -> tuple:
    FakeSession.created = []
    report = LoadGenerator(LoadPlan(base_url="http://game.test:5001", **plan),
                           session_factory=lambda: FakeSession(answer)).run()
    calls = [c for s in FakeSession.created for c in s.calls]
    return report, calls, FakeSession.created


def test_the_mix_is_exact_and_interleaved():
    tickets = TicketSequence({"sword": 3, "shield": 1})
    assert [tickets.next()[1] for _ in range(8)] == ["sword", "sword", "shield", "sword"] * 2
    tickets = TicketSequence(DEFAULT_MIX, limit=250)
    drawn = [tickets.next() for _ in range(260)]
    assert drawn[250:] == [None] * 10
    counts = Counter(t[1] for t in drawn[:200])
    assert counts == Counter({name: 2 * w for name, w in DEFAULT_MIX.items()})
    assert [t[0] for t in drawn[:250]] == list(range(250))
    joins = [t[2] for t in drawn[:250] if t[1] == "join"]
    assert joins == list(range(len(joins)))


def test_a_fixed_count_of_requests_with_the_mix_per_player_agents_and_guilds():
    report, calls, sessions = run_load(players=4, rate=0, duration=30, requests=100)
    assert report.requests == 100 and report.errors == 0 and len(calls) == 100
    assert report.ok == Counter(DEFAULT_MIX)  # weights sum to 100: exactly the mix
    assert all(url.startswith("http://game.test:5001/") for url, _, _ in calls)
    assert Counter(url.rsplit("/", 1)[1] for url, _, _ in calls)["purchase_a_sword"] == 25
    assert {agent for _, _, agent in calls} <= {f"game-load/1.0 (player {i:03d})" for i in range(1, 5)}
    assert len(sessions) == 4 and all(s.closed for s in sessions)
    guilds = Counter(params["guild"] for url, params, _ in calls if url.endswith("/join_guild"))
    assert guilds == Counter({DEFAULT_GUILDS[0]: 5, DEFAULT_GUILDS[1]: 5, DEFAULT_GUILDS[2]: 5})
    assert report.requests_per_second > 0
    text = report.text()
    assert text.startswith("100 requests in ") and "requests/s, 100 ok, 0 errors (4 players" in text
    assert "sword     25       0  /purchase_a_sword" in text


def test_errors_are_counted_with_their_message():
    def answer(url, params):
        if url.endswith("/purchase_a_sword"):
            return FakeResponse(503, {"error": "Your purchase of a sword could not be recorded", "logged": False})
        if url.endswith("/declare_war"):
            raise ConnectionError("connection refused")
        return FakeResponse(200, {})

    report, calls, _ = run_load(answer, players=3, rate=0, duration=30, requests=40,
                                mix={"sword": 1, "war": 1, "peace": 2})
    assert report.requests == 40 and report.errors == 20
    assert report.ok == Counter({"peace": 20}) and report.failed == Counter({"sword": 10, "war": 10})
    assert report.error_messages == Counter({
        "HTTP 503: Your purchase of a sword could not be recorded": 10,
        "ConnectionError: connection refused": 10})
    assert "error x10: HTTP 503: Your purchase of a sword could not be recorded" in report.text()


def test_the_rate_and_the_duration_bound_the_run():
    started = time.monotonic()
    progress: list = []
    FakeSession.created = []
    generator = LoadGenerator(LoadPlan(base_url="http://game.test", players=2, rate=20, duration=1.0),
                              session_factory=FakeSession)
    report = generator.run(on_progress=progress.append, progress_every=0.4)
    assert time.monotonic() - started < 3
    assert 14 <= report.requests <= 22  # 20 requests/s for 1 s
    assert progress and progress[0].requests <= report.requests and "requests/s" in progress[0].line()


@pytest.mark.parametrize("plan, message", [
    ({"base_url": "game.test:5001"}, r"Base URL 'game.test:5001' is not valid"),
    ({"players": 0}, r"players=0 is not valid; use 1 to 500"),
    ({"rate": -1}, r"rate=-1 is not valid"),
    ({"duration": 0}, r"duration=0 is not valid"),
    ({"duration": 1e6}, r"duration=1000000.0 is not valid"),
    ({"requests": 0}, r"requests=0 is not valid"),
    ({"guilds": ()}, r"guilds=\[\] is not valid"),
    ({"mix": {"dragon": 1}}, r"Unknown action\(s\) 'dragon' in the mix; available: visit, sword"),
    ({"mix": {"sword": 0}}, r"gives every action weight 0"),
])
def test_bad_plans_are_refused_before_any_request(plan, message):
    with pytest.raises(LoadPlanError, match=message):
        LoadGenerator(LoadPlan(**plan), session_factory=lambda: pytest.fail("no session may be built"))


def test_parse_mix():
    assert parse_mix("sword=3, shield=1,join=0") == {"sword": 3, "shield": 1}
    for bad, message in [("sword", "is not valid; write action=weight"), ("sword=x", "is not valid"),
                         ("sword=1,sword=2", "given twice"), ("axe=-1", "is not valid")]:
        with pytest.raises(LoadPlanError, match=message):
            parse_mix(bad)


# ============================================================================ routing: declaration
EVENT = StructType([StructField("kind", StringType(), nullable=False), StructField("n", IntegerType())])


def routed(**attrs):
    body = {"name": "unit-routed", "topics": ["things"], "route_field": "kind",
            "routes": {"a": "alphas", "b": "betas", "c": "betas"},
            "schema": {"alphas": EVENT, "betas": "kind STRING, n INT NOT NULL"}, "writer": RecordingWriter()}
    body.update(attrs)
    return type("UnitRouted", (ConsumerSparkABC,), body)


@pytest.mark.parametrize("attrs, message", [
    ({"routes": None}, r"UnitRouted.route_field is 'kind' but UnitRouted.routes is not declared"),
    ({"route_field": None}, r"UnitRouted.routes is declared but UnitRouted.route_field is not"),
    ({"route_field": ""}, r"UnitRouted.route_field must be the name of a top-level field"),
    ({"route_field": "kafka_key"}, r"UnitRouted.route_field 'kafka_key' is reserved"),
    ({"routes": {}}, r"UnitRouted.routes must be a non-empty dict"),
    ({"routes": ["a"]}, r"UnitRouted.routes must be a non-empty dict"),
    ({"routes": {1: "alphas"}}, r"UnitRouted.routes has the key 1"),
    ({"routes": {"a": "bad table"}}, r"UnitRouted.routes\['a'\] is 'bad table', which is not a table name"),
    ({"routes": {"a": "_hidden"}}, r"which is not a table name"),
    ({"routes": {"a": "things_quarantine"}}, r"names ending in '_quarantine' are for quarantines"),
    ({"topics": ["x", "y"]}, r"UnitRouted declares routes for 2 topics \['x', 'y'\]; .*one routing consumer per topic"),
    ({"schema": EVENT}, r"UnitRouted.schema must be a dict with one schema per table of the routes \('alphas', "),
    ({"schema": {"alphas": EVENT}}, r"UnitRouted.schema needs exactly one schema per table .*missing: 'betas'"),
    ({"schema": {"alphas": EVENT, "betas": EVENT, "things": EVENT}}, r"not a table of the routes: 'things'"),
    ({"schema": {"alphas": EVENT, "betas": 5}}, r"UnitRouted.schema\['betas'\] must be a pyspark StructType"),
])
def test_wrong_routing_declarations_fail_at_class_creation(attrs, message):
    with pytest.raises(DeclarationError, match=message):
        routed(**attrs)
    assert "unit-routed" not in CONSUMERS


def test_a_routing_declaration_registers_and_describes_its_tables(unit_settings):
    cls = routed()
    assert CONSUMERS.get("unit-routed") is cls
    assert cls.describe(unit_settings).endswith("routes: kind -> alphas, betas")
    assert "routes: event_type -> purchases, joins, declarations, visits" in GameEventsConsumer.describe()


# ============================================================================ routing: batches
GAME = {"timestamp": "2026-01-05T08:00:00.123Z", "host": "h:5001", "user_agent": "p1"}


def game_value(event_type: str | None = None, **fields) -> str:
    return json.dumps({**GAME, **({"event_type": event_type} if event_type is not None else {}), **fields})


STRENGTH_REFUSED = ("field 'strength' expected decimal(4,2) (a number in plain notation with at most 2 decimal places "
                    "and 2 integer digits), got ")
ROUTED_BAD = {
    game_value("dance"): "unknown event_type 'dance'",
    game_value(): "missing required field 'event_type'",
    json.dumps({**GAME, "event_type": None}): "required field 'event_type' is null",
    game_value("purchase_axe", item="axe", strength="strong"): f"{STRENGTH_REFUSED}\"strong\"",
    game_value("purchase_axe", item="axe", strength=7.505): f"{STRENGTH_REFUSED}7.505",  # would round
    game_value("purchase_axe", item="axe", strength=100): f"{STRENGTH_REFUSED}100",
    game_value("purchase_axe", strength=1.0): "missing required field 'item'",
    game_value("join_guild"): "missing required field 'guild'",
    game_value("declare_war", timestamp="yesterday"): "field 'timestamp' expected an ISO-8601 date-time (an epoch "
                                                      "number needs a declared unit: timestamp_units), got yesterday",
    "not json": "not valid JSON",
    "[1, 2]": "not a JSON object (got an array)",
    "": "empty value",
    game_value(7): "unknown event_type '7'",
}
ROUTED_GOOD = [
    game_value("purchase_sword", item="sword", strength=7.5, description="a fine steel sword"),
    game_value("join_guild", guild="the-knights"),
    game_value("declare_peace"),
    game_value("purchase_potion", item="potion", strength=0, description="a flimsy healing potion"),
    game_value("visit", extra="ignored"),
]


def test_routing_splits_one_topic_into_tables_and_one_quarantine(spark):
    values = ROUTED_GOOD + list(ROUTED_BAD)
    result = parse_values(GameEventsConsumer, values, spark=spark)
    assert {t: [r["kafka_offset"] for r in rows] for t, rows in result.tables.items()} == {
        "purchases": [0, 3], "joins": [1], "declarations": [2], "visits": [4]}
    purchase = result.tables["purchases"][0]
    assert list(purchase) == ["event_type", "timestamp", "host", "user_agent", "item", "strength", "description",
                              *METADATA_COLUMNS]
    assert (purchase["item"], purchase["strength"], purchase["timestamp"]) == (
        "sword", Decimal("7.50"), dt.datetime(2026, 1, 5, 8, 0, 0, 123000))
    assert str(result.tables["purchases"][1]["strength"]) == "0.00"
    assert list(result.tables["joins"][0])[:5] == ["event_type", "timestamp", "host", "user_agent", "guild"]
    assert {q["raw_value"]: q["reason"] for q in result.quarantine} == ROUTED_BAD
    assert all(list(q) == list(QUARANTINE_COLUMNS) for q in result.quarantine)
    offsets = sorted([r["kafka_offset"] for r in result.rows] + [q["kafka_offset"] for q in result.quarantine])
    assert offsets == list(range(len(values)))  # every record in exactly one place


def test_every_strength_the_api_can_draw_lands_exactly_in_purchases(spark):
    values = [game_value("purchase_axe", item="axe", strength=float(d)) for d in ALL_STRENGTHS]
    result = parse_values(GameEventsConsumer, values, spark=spark)
    assert result.quarantine == []
    assert [str(r["strength"]) for r in result.tables["purchases"]] == [f"{d:.2f}" for d in ALL_STRENGTHS]


def test_a_routing_batch_hands_each_table_and_the_quarantine_to_the_writer(spark, unit_settings):
    recorder = RecordingWriter()
    seen: list = []

    class Routed(GameEventsConsumer):
        name = "unit-game-recorded"
        writer = recorder

        def transform(self, df, table):
            seen.append(table)
            return df

    consumer = Routed(unit_settings, spark=spark)
    assert run_batch(consumer, ROUTED_GOOD + ["oops"], batch_id=3) == (5, 1)
    assert sorted(seen) == ["declarations", "joins", "purchases", "visits"]
    assert [r["item"] for r in recorder.batches[("purchases", 3)]] == ["sword", "potion"]
    assert recorder.quarantined[("events", 3)][0]["reason"] == "not valid JSON"
    assert run_batch(consumer, ROUTED_GOOD[1:2], batch_id=4) == (1, 0)
    assert set(recorder.batches) - {(t, 3) for t in seen} == {("joins", 4)}  # empty tables are not handed over
    assert consumer._table_rows() == {"purchases": 2, "joins": 2, "declarations": 1, "visits": 1}
    with pytest.raises(Exception, match="routes 'events' into tables"):
        consumer._schema_for("events")


def test_parquet_tables_per_route_exactly_once_and_queryable(spark, unit_settings):
    class Routed(GameEventsConsumer):
        name = "unit-game-parquet"
        writer = ParquetWriter()

    consumer = Routed(unit_settings, spark=spark)
    routing = consumer._routing()
    consumer.bound_writer.prepare_routes("events", routing.tables, fresh_checkpoint=True)
    out = unit_settings.output_dir
    batch = ROUTED_GOOD * 3 + ["bad", game_value("dance")]
    assert run_batch(consumer, batch, batch_id=0, partitions=3) == (15, 2)
    assert run_batch(consumer, ROUTED_GOOD[:2], batch_id=1) == (2, 0)
    assert run_batch(consumer, batch, batch_id=0, partitions=3) == (15, 2)  # a replay replaces batch 0

    assert sorted(p.name for p in (out / "purchases").glob("*.parquet")) == ["batch-000000000000.parquet",
                                                                              "batch-000000000001.parquet"]
    assert sorted(p.name for p in (out / "declarations").glob("*.parquet")) == ["batch-000000000000.parquet"]
    assert not (out / "events").exists()  # the topic itself is no table
    assert json.loads((out / "joins" / MARKER).read_text()) == {"consumer": "unit-game-parquet", "topic": "events"}
    counts = {t: pq.read_table(out / t).num_rows for t in routing.tables}
    assert counts == {"purchases": 7, "joins": 4, "declarations": 3, "visits": 3}
    quarantine = pq.read_table(out / "events_quarantine").column("reason").to_pylist()
    assert sorted(quarantine) == ["not valid JSON", "unknown event_type 'dance'"]

    tables = register_tables(spark, out)
    assert set(tables) == {"purchases", "joins", "declarations", "visits", "events_quarantine"}
    rows = spark.sql("SELECT item, count(*) AS n, round(avg(strength), 2) AS s FROM purchases "
                     "GROUP BY item ORDER BY item").collect()
    assert [tuple(r) for r in rows] == [("potion", 3, Decimal("0.00")), ("sword", 4, Decimal("7.50"))]
    strength = pq.read_schema(next((out / "purchases").glob("*.parquet"))).field("strength")
    assert (str(strength.type), strength.nullable) == ("decimal128(4, 2)", False)
    with pytest.raises(Exception, match="already holds 2 published batch"):
        consumer.bound_writer.prepare_routes("events", routing.tables, fresh_checkpoint=True)


def test_routing_is_generic_ddl_schemas_and_any_json_value(spark, unit_settings):
    recorder = RecordingWriter()
    cls = routed(writer=recorder, routes={"1": "alphas", "true": "betas", "b": "betas"})
    consumer = cls(unit_settings, spark=spark)
    values = ['{"kind": 1, "n": 5}', '{"kind": true, "n": 6}', '{"kind": "b"}', '{"kind": "a", "n": 1}']
    assert run_batch(consumer, values, batch_id=0) == (2, 2)
    assert [r["n"] for r in recorder.rows("alphas")] == [5] and [r["n"] for r in recorder.rows("betas")] == [6]
    assert sorted(r["reason"] for r in recorder.quarantined[("things", 0)]) == [
        "missing required field 'n'", "unknown kind 'a'"]
