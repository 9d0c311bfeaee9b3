"""The replay API serves a user's dataset files: formats, order, bad lines, exact bytes (Flask test client)."""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from apps.api import create_app
from framework.records import split_position
from framework.settings import Settings

BIG = b'{"time":"2026-01-05T06:00:00Z","id":1,"amount":12345678901234567890.12,"n":123456789012345678901234567890}'


def app_for(data_dir: Path, **settings):
    return create_app(Settings.from_env({}, **settings), data_dir=data_dir, delay=0).test_client()


def served(client, name: str, query: str = "") -> list[bytes]:
    response = client.get(f"/stream_data_{name}{query}")
    assert response.status_code == 200, response.data
    assert response.data == b"" or response.data.endswith(b"\n")
    return response.data.splitlines()


def test_big_numbers_pass_byte_for_byte(tmp_path: Path) -> None:
    (tmp_path / "big.jsonl").write_bytes(BIG + b"\n")
    (line,) = served(app_for(tmp_path), "big")
    assert line == b'{"_position":0,' + BIG[1:]
    assert split_position(line) == (0, BIG)  # what the producer sends: the file's bytes


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".ndjson"])
def test_json_lines_under_every_suffix(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"feed{suffix}").write_bytes(b'\xef\xbb\xbf{"id":1}\r\n\n  {"id":2}  \n{}\n{ }\n')
    assert served(app_for(tmp_path), "feed") == [b'{"_position":0,"id":1}', b'{"_position":1,"id":2}',
                                                b'{"_position":2}', b'{"_position":3}']


def test_one_json_array_pretty_printed_with_non_objects_served_as_they_are(tmp_path: Path) -> None:
    records = [{"id": 1, "time": "2026-01-05T06:00:10Z", "tags": ["a", "b"]}, [1, 2],
               {"id": 2, "time": "2026-01-05T06:00:00Z", "s": "x,]}\"["}, 7, {}]
    (tmp_path / "array.json").write_text(json.dumps(records, indent=2), encoding="utf-8")
    lines = served(app_for(tmp_path), "array")
    # elements without a time follow the element before them: 7 and {} after id 2, [1, 2] after id 1
    assert [orjson.loads(split_position(line)[1]) for line in lines] == [records[i] for i in (2, 3, 4, 0, 1)]
    assert lines[1] == b"7" and lines[4] == b"[     1,     2   ]"  # line breaks become spaces, nothing else changes
    assert [split_position(line)[0] for line in lines] == [0, None, 2, 3, None]


def test_a_broken_array_is_unavailable_with_a_reason_and_the_others_are_served(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('[\n  {"id": 1},\n  {"id": 2\n', encoding="utf-8")
    (tmp_path / "ok.ndjson").write_text('{"id": 1}\n', encoding="utf-8")
    client = app_for(tmp_path)
    (unavailable,) = client.get("/").get_json()["unavailable"]
    assert unavailable["name"] == "broken" and "not valid JSON" in unavailable["error"]
    assert client.get("/stream_data_broken").status_code == 503
    assert served(client, "ok") == [b'{"_position":0,"id": 1}']


def test_json_lines_starting_with_an_array_line_stay_json_lines(tmp_path: Path) -> None:
    (tmp_path / "lines.json").write_text('[1, 2]\n{"id": 1}\n', encoding="utf-8")
    assert served(app_for(tmp_path), "lines") == [b"[1, 2]", b'{"_position":1,"id": 1}']


def test_two_files_with_one_name_are_reported(tmp_path: Path) -> None:
    (tmp_path / "feed.json").write_text('{"id": 1}\n', encoding="utf-8")
    (tmp_path / "feed.jsonl").write_text('{"id": 2}\n', encoding="utf-8")
    index = app_for(tmp_path).get("/").get_json()
    assert [s["file"] for s in index["streams"]] == ["feed.json"]
    assert "same stream name as feed.json" in index["unavailable"][0]["error"]


def test_file_order_without_a_time_field_and_speed_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain.jsonl").write_text('{"id": 3}\n{"id": 1}\nnot json\n{"id": 2}\n', encoding="utf-8")
    client = app_for(tmp_path)
    assert served(client, "plain") == [b'{"_position":0,"id": 3}', b'{"_position":1,"id": 1}', b"not json",
                                       b'{"_position":3,"id": 2}']
    assert client.get("/").get_json()["streams"][0]["order"] == "file"
    response = client.get("/stream_data_plain?speed=10")
    assert response.status_code == 400 and "file order" in response.get_json()["error"]


def test_the_time_field_is_a_setting(tmp_path: Path) -> None:
    (tmp_path / "ts.jsonl").write_text('{"id": 1, "ts": 20, "time": 1}\n{"id": 2, "ts": 10, "time": 2}\n',
                                       encoding="utf-8")
    by_ts = [orjson.loads(line)["id"] for line in served(app_for(tmp_path, api_time_field="ts"), "ts")]
    by_time = [orjson.loads(line)["id"] for line in served(app_for(tmp_path), "ts")]
    in_file = [orjson.loads(line)["id"] for line in served(app_for(tmp_path, api_time_field=""), "ts")]
    assert (by_ts, by_time, in_file) == ([2, 1], [1, 2], [1, 2])


def test_a_bad_line_keeps_its_place_and_position_and_from_states_it(tmp_path: Path) -> None:
    (tmp_path / "mixed.jsonl").write_text(
        '{"id": 1, "time": 30}\n{"id": 2, "time": 10}\n{"id": 3, oops\n{"id": 4, "time": 20}\n', encoding="utf-8")
    client = app_for(tmp_path)
    lines = served(client, "mixed")
    assert lines == [b'{"_position":0,"id": 2, "time": 10}', b'{"id": 3, oops',  # right after id 2, as in the file
                     b'{"_position":2,"id": 4, "time": 20}', b'{"_position":3,"id": 1, "time": 30}']
    response = client.get("/stream_data_mixed?from=1&limit=1")
    assert response.headers["X-Stream-From"] == "1" and response.data == b'{"id": 3, oops\n'
    assert served(app_for(tmp_path), "mixed") == lines  # the same positions after a restart
