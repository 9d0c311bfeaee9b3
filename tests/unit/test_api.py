"""The streaming replay API through Flask's test client: order, positions, resume, errors, pacing."""
from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest

from apps.api import create_app
from apps.replay import parse_time, scan
from framework.errors import DataSourceError, SettingsError
from framework.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

# Out of time order on purpose; ids 3 and 4 share a time (file order must be kept), and
# id 6 is written with an offset (07:00:30+01:00 is 06:00:30Z).
EVENTS = [
    {"id": 1, "time": "2026-01-05T06:00:10.000Z", "val": 1.5},
    {"id": 2, "time": "2026-01-05T06:00:00.000Z", "val": 2.5},
    {"id": 3, "time": "2026-01-05T06:00:20.000Z", "val": 3.5},
    {"id": 4, "time": "2026-01-05T06:00:20.000Z", "val": 4.5, "note": "same time as 3"},
    {"id": 5, "time": "2026-01-05T06:00:05.000Z", "val": 5.5},
    {"id": 6, "time": "2026-01-05T07:00:30+01:00", "val": 6.5},
    {"id": 7, "time": "2026-01-05T06:00:40.500Z", "val": 7.5, "tags": {"a": [1, 2]}},
]
EVENTS_ORDER = [2, 5, 1, 3, 4, 6, 7]


def write_lines(path: Path, records: list, *, compact: bool = True) -> Path:
    dump = (lambda r: json.dumps(r, separators=(",", ":"))) if compact else json.dumps
    path.write_text("".join(dump(r) + "\n" for r in records), encoding="utf-8")
    return path


def env_settings() -> Settings:
    return Settings.from_env({})


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    write_lines(d / "events.json", EVENTS)
    write_lines(d / "loose.json", EVENTS[:3], compact=False)
    (d / "ground_truth.json").write_text('{\n  "1": [1, 2, 3]\n}\n', encoding="utf-8")
    (d / "notes.txt").write_text("not a stream\n", encoding="utf-8")
    return d


@pytest.fixture
def client(data_dir: Path):
    return create_app(env_settings(), data_dir=data_dir, delay=0).test_client()


def lines_of(response) -> list[dict]:
    assert response.status_code == 200, response.data
    body = response.data
    assert body == b"" or body.endswith(b"\n")
    return [orjson.loads(line) for line in body.splitlines()]


# ------------------------------------------------------------------ index and health
def test_index_lists_streams_with_counts_times_and_urls(client) -> None:
    index = client.get("/").get_json()
    by_name = {s["name"]: s for s in index["streams"]}
    assert sorted(by_name) == ["events", "loose"]  # ground_truth.json and notes.txt are no streams
    events = by_name["events"]
    assert events["records"] == len(EVENTS)
    assert events["first_time"] == "2026-01-05T06:00:00.000Z"
    assert events["last_time"] == "2026-01-05T06:00:40.500Z"
    assert events["url"].endswith("/stream_data_events")
    assert index["unavailable"] == []
    assert set(index["parameters"]) == {"from", "limit", "delay", "speed"}


def test_health(client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "streams": 2, "unavailable": 0}


# ------------------------------------------------------------------ order, positions, wire format
def test_stream_is_ndjson_in_time_order_with_positions_first(client) -> None:
    response = client.get("/stream_data_events")
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["X-Stream-Records"] == str(len(EVENTS))
    raw = response.data.splitlines()
    assert all(line.startswith(b'{"_position":') for line in raw)
    records = lines_of(response)
    assert [r["_position"] for r in records] == list(range(len(EVENTS)))
    assert [r["id"] for r in records] == EVENTS_ORDER  # by time; equal times keep file order
    times = [parse_time(r["time"]) for r in records]
    assert times == sorted(times)
    originals = {e["id"]: e for e in EVENTS}
    for record in records:  # the original object, untouched, plus _position
        rest = dict(record)
        del rest["_position"]
        assert rest == originals[record["id"]]
        assert list(rest) == list(originals[record["id"]])


def test_lines_are_the_records_own_bytes_with_the_position_spliced_in(client, data_dir: Path) -> None:
    response = client.get("/stream_data_loose")
    originals = (data_dir / "loose.json").read_bytes().splitlines()
    assert response.data.splitlines() == [b'{"_position":%d,%s' % (p, originals[i][1:])
                                          for p, i in enumerate([1, 0, 2])]
    assert [r["id"] for r in lines_of(response)] == [2, 1, 3]


def test_positions_are_stable_across_restarts(data_dir: Path) -> None:
    first = create_app(env_settings(), data_dir=data_dir, delay=0).test_client().get("/stream_data_events").data
    second = create_app(env_settings(), data_dir=data_dir, delay=0).test_client().get("/stream_data_events").data
    assert first == second


@pytest.mark.parametrize("cut", range(len(EVENTS) + 1))
def test_resume_from_cut_has_no_gap_and_no_repeat(client, cut: int) -> None:
    full = client.get("/stream_data_events").data
    head = client.get(f"/stream_data_events?limit={cut}").data
    tail = client.get(f"/stream_data_events?from={cut}").data
    assert head + tail == full
    if cut < len(EVENTS):
        assert orjson.loads(tail.splitlines()[0])["_position"] == cut


def test_limit_and_from_together(client) -> None:
    records = lines_of(client.get("/stream_data_events?from=2&limit=3"))
    assert [r["_position"] for r in records] == [2, 3, 4]
    assert lines_of(client.get("/stream_data_events?limit=0")) == []
    assert len(lines_of(client.get("/stream_data_events?limit=999"))) == len(EVENTS)


def test_from_at_the_end_is_empty_and_beyond_is_400(client) -> None:
    assert lines_of(client.get(f"/stream_data_events?from={len(EVENTS)}")) == []
    response = client.get(f"/stream_data_events?from={len(EVENTS) + 1}")
    assert response.status_code == 400
    assert "beyond the end" in response.get_json()["error"]


def test_shipped_datasets_are_served_in_time_order() -> None:
    client = create_app(env_settings(), data_dir=ROOT / "data_source", delay=0).test_client()
    index = {s["name"]: s for s in client.get("/").get_json()["streams"]}
    assert sorted(index) == ["metrics", "workorder"]
    for name in index:
        records = lines_of(client.get(f"/stream_data_{name}"))
        assert len(records) == index[name]["records"] > 0
        assert [r["_position"] for r in records] == list(range(len(records)))
        assert [r["time"] for r in records] == sorted(r["time"] for r in records)


# ------------------------------------------------------------------ bad requests
def test_unknown_stream_is_404_listing_the_available_ones(client) -> None:
    response = client.get("/stream_data_metrix")
    assert response.status_code == 404
    body = response.get_json()
    assert body["available"] == ["events", "loose"]
    assert "'metrix'" in body["error"] and "events, loose" in body["error"]


def test_unknown_path_is_a_json_404(client) -> None:
    response = client.get("/nothing/here")
    assert response.status_code == 404
    assert response.get_json()["available"] == ["events", "loose"]


@pytest.mark.parametrize("path", [
    "/stream_data_..",
    "/stream_data_../secret",
    "/stream_data_..%2Fsecret",
    "/stream_data_..%2fsecret",
    "/stream_data_%2e%2e%2fsecret",
    "/stream_data_%2E%2E%2Fdata%2F..%2Fsecret",
    "/stream_data_secret",
    "/stream_data_%2Fetc%2Fpasswd",
    "/stream_data_ground_truth",
    "/stream_data_notes",
    "/stream_data_events.json",
    "/stream_data_events%00",
])
def test_names_never_reach_files_outside_the_index(client, data_dir: Path, path: str) -> None:
    write_lines(data_dir.parent / "secret.json", [{"time": "2026-01-01T00:00:00Z", "secret": "s3cr3t"}])
    response = client.get(path)
    assert response.status_code == 404
    assert b"s3cr3t" not in response.data and b"root:" not in response.data
    assert response.get_json()["available"] == ["events", "loose"]


@pytest.mark.parametrize("query, word", [
    ("from=-1", "from"), ("from=abc", "from"), ("from=1.5", "from"), ("from=", "from"),
    ("limit=-1", "limit"), ("limit=x", "limit"),
    ("delay=abc", "delay"), ("delay=-1", "delay"), ("delay=nan", "delay"), ("delay=inf", "delay"),
    ("speed=0", "speed"), ("speed=-2", "speed"), ("speed=abc", "speed"),
    ("delay=0&speed=10", "speed"), ("form=1", "form"), ("from=1&from=2", "from"),
])
def test_malformed_parameters_are_400_with_one_sentence(client, query: str, word: str) -> None:
    response = client.get(f"/stream_data_events?{query}")
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert word in message and message.endswith(".")
    assert message.count(". ") == 0  # one sentence


# --------------------------------------------------------- bad lines are served, never the whole stream refused
BAD_LINES = {
    "badjson": ('{"time": "2026-01-05T06:00:00Z"}\n\n{"time": "2026-01-05T06:00:01Z"}\n{"time": oops}\n',
                [b'{"_position":0,"time": "2026-01-05T06:00:00Z"}', b'{"_position":1,"time": "2026-01-05T06:00:01Z"}',
                 b'{"time": oops}']),
    "array": ('{"time": "2026-01-05T06:00:00Z"}\n[1, 2]\n', [b'{"_position":0,"time": "2026-01-05T06:00:00Z"}',
                                                            b"[1, 2]"]),
    "notime": ('{"id": 1, "val": 2}\n', [b'{"_position":0,"id": 1, "val": 2}']),
    "badtime": ('{"time": "2026-01-05T06:00:09Z"}\n{"time": "yesterday"}\n{"time": "2026-01-05T06:00:00Z"}\n',
                [b'{"_position":0,"time": "2026-01-05T06:00:00Z"}', b'{"_position":1,"time": "2026-01-05T06:00:09Z"}',
                 b'{"_position":2,"time": "yesterday"}']),
    "booltime": ('{"time": true}\n', [b'{"_position":0,"time": true}']),
    "reserved": ('{"time": "2026-01-05T06:00:00Z", "_position": 3}\n',
                 [b'{"_position":0,"time": "2026-01-05T06:00:00Z", "_position": 3}']),
}


def test_bad_lines_are_served_as_they_are_and_the_rest_too(data_dir: Path) -> None:
    for name, (text, _) in BAD_LINES.items():
        (data_dir / f"{name}.json").write_text(text, encoding="utf-8")
    client = create_app(env_settings(), data_dir=data_dir, delay=0).test_client()
    index = client.get("/").get_json()
    assert index["unavailable"] == []
    for name, (_, expected) in BAD_LINES.items():
        response = client.get(f"/stream_data_{name}")
        assert response.status_code == 200
        assert response.data.splitlines() == expected, name
    assert client.get("/health").get_json() == {"status": "ok", "streams": 2 + len(BAD_LINES), "unavailable": 0}


def test_scan_counts_what_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"time": 1}\n{"time": 2,}\n', encoding="utf-8")
    stream = scan(path)
    assert (stream.records, stream.not_objects, stream.timed) == (2, 1, True)


def test_a_file_changed_after_start_is_503(data_dir: Path) -> None:
    client = create_app(env_settings(), data_dir=data_dir, delay=0).test_client()
    with open(data_dir / "events.json", "a", encoding="utf-8") as f:
        f.write('{"id": 8, "time": "2026-01-05T07:00:00Z"}\n')
    response = client.get("/stream_data_events")
    assert response.status_code == 503
    assert "restart the API" in response.get_json()["error"]


def test_missing_data_directory_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        create_app(env_settings(), data_dir=tmp_path / "nowhere")


def test_negative_default_delay_is_refused(data_dir: Path) -> None:
    with pytest.raises(SettingsError):
        create_app(env_settings(), data_dir=data_dir, delay=-1)


# ------------------------------------------------------------------ time values
@pytest.mark.parametrize("value, expected", [
    ("1970-01-01T00:00:01Z", 1_000_000),
    ("1970-01-01T00:00:01.250Z", 1_250_000),
    ("1970-01-01T01:00:01+01:00", 1_000_000),
    ("1970-01-01T00:00:01", 1_000_000),  # no offset: UTC
    (1, 1_000_000),
    (1.5, 1_500_000),
])
def test_parse_time(value, expected: int) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", [True, None, "soon", [1], float("nan")])
def test_parse_time_refuses(value) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_time(value)


# ------------------------------------------------------------------ pacing
def timed_get(client, url: str) -> tuple[list[dict], float]:
    started = time.monotonic()
    records = lines_of(client.get(url))
    return records, time.monotonic() - started


def test_delay_parameter_paces_records(client) -> None:
    records, elapsed = timed_get(client, "/stream_data_events?delay=0.05&limit=5")
    assert len(records) == 5
    assert elapsed >= 4 * 0.05 * 0.95  # four gaps; the first record is sent at once


def test_default_delay_comes_from_create_app(data_dir: Path) -> None:
    client = create_app(env_settings(), data_dir=data_dir, delay=0.04).test_client()
    assert client.get("/").get_json()["default_delay"] == 0.04
    records, elapsed = timed_get(client, "/stream_data_events?limit=4")
    assert len(records) == 4 and elapsed >= 3 * 0.04 * 0.95
    _, fast = timed_get(client, "/stream_data_events?delay=0")
    assert fast < 0.5


def test_default_delay_comes_from_settings(data_dir: Path) -> None:
    client = create_app(Settings.from_env({"PIPELINE_API_DELAY": "0.03"}), data_dir=data_dir).test_client()
    assert client.get("/").get_json()["default_delay"] == 0.03


def test_speed_replays_real_gaps_scaled(client) -> None:
    # events span 06:00:00 .. 06:00:40.5: 40.5 s of data; speed=200 -> about 0.2 s
    records, elapsed = timed_get(client, "/stream_data_events?speed=200")
    assert len(records) == len(EVENTS)
    assert elapsed >= 40.5 / 200 * 0.95
    # from position 3 (06:00:20) to the end: 20.5 s of data
    records, elapsed = timed_get(client, "/stream_data_events?speed=100&from=3")
    assert [r["_position"] for r in records] == [3, 4, 5, 6]
    assert elapsed >= 20.5 / 100 * 0.95
