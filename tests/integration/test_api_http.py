"""The streaming API over real HTTP (werkzeug server in a thread, `requests` as the client)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from apps.api import create_app, serve_in_thread
from framework.errors import ApiServerError
from framework.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 20


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    lines = [json.dumps({"id": i, "time": f"2026-01-05T06:00:{i:02d}.000Z", "val": i / 2}) for i in range(RECORDS)]
    (tmp_path / "ticks.json").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    return tmp_path


@pytest.fixture
def server(data_dir: Path):
    with serve_in_thread(create_app(Settings.from_env({}), data_dir=data_dir, delay=0.05)) as running:
        yield running


def test_port_zero_is_reported_and_index_answers(server) -> None:
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    index = requests.get(server.url + "/", timeout=5).json()
    assert index["streams"][0]["url"] == f"{server.url}/stream_data_ticks"
    assert requests.get(server.url + "/health", timeout=5).json()["status"] == "ok"


def test_first_records_arrive_before_the_response_completes(server) -> None:
    started = time.monotonic()
    with requests.get(server.url + "/stream_data_ticks", params={"delay": 0.05}, stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert r.headers["Transfer-Encoding"] == "chunked"
        arrivals, records = [], []
        for line in r.iter_lines():
            arrivals.append(time.monotonic() - started)
            records.append(json.loads(line))
    total = time.monotonic() - started
    assert [rec["_position"] for rec in records] == list(range(RECORDS))
    assert [rec["id"] for rec in records] == list(range(RECORDS))  # time order, the file is reversed
    assert arrivals[0] < 0.5  # the first line long before the 19 gaps of 0.05 s are over
    assert total >= (RECORDS - 1) * 0.05 * 0.95
    assert arrivals[RECORDS // 2] < total - 0.2  # lines keep arriving one by one


def test_delay_zero_streams_every_shipped_record() -> None:
    app = create_app(Settings.from_env({}), data_dir=ROOT / "data_source", delay=0.1)
    with serve_in_thread(app) as running:
        expected = requests.get(running.url + "/", timeout=5).json()["streams"]
        for stream in expected:
            count = 0
            with requests.get(stream["url"], params={"delay": 0}, stream=True, timeout=30) as r:
                for count, line in enumerate(r.iter_lines(), start=1):  # noqa: B007 - the last ones are checked
                    pass
                assert json.loads(line)["_position"] == count - 1
            assert count == stream["records"]


def test_resume_over_http(server) -> None:
    url = server.url + "/stream_data_ticks"
    full = requests.get(url, params={"delay": 0}, timeout=5).content
    head = requests.get(url, params={"delay": 0, "limit": 7}, timeout=5).content
    tail = requests.get(url, params={"delay": 0, "from": 7}, timeout=5).content
    assert head + tail == full and full.count(b"\n") == RECORDS


def test_stop_ends_running_streams_as_incomplete_and_closes_the_port(server) -> None:
    url = server.url
    response = requests.get(url + "/stream_data_ticks", params={"delay": 0.5}, stream=True, timeout=5)
    lines = response.iter_lines()
    assert json.loads(next(lines))["_position"] == 0
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for _ in lines:  # the stream must not look complete
            pass
    response.close()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/health", timeout=2)
    server.stop()  # idempotent


def test_a_busy_port_is_a_clear_error(server) -> None:
    app = create_app(Settings.from_env({}), data_dir=ROOT / "data_source")
    with pytest.raises(ApiServerError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        serve_in_thread(app, "127.0.0.1", server.port)
