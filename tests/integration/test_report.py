"""The production report finds the parameters the dataset generator planted."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.report import build_report

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data_source"


def _write_table(path: Path, records: list[dict], time_field: str = "time") -> None:
    import datetime as dt

    for r in records:
        r[time_field] = dt.datetime.fromisoformat(r[time_field].replace("Z", "+00:00"))
    path.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records), path / "part-0.parquet")


def test_report_finds_the_planted_drivers(spark, tmp_path):
    metrics = [json.loads(line) for line in (DATA / "metrics.json").read_text().splitlines() if line.strip()]
    workorder = [json.loads(line) for line in (DATA / "workorder.json").read_text().splitlines() if line.strip()]
    _write_table(tmp_path / "metrics", metrics)
    _write_table(tmp_path / "workorder", workorder)

    report, findings = build_report(spark, tmp_path)

    truth = {int(k): sorted(v) for k, v in json.loads((DATA / "ground_truth.json").read_text()).items()}
    assert {f.product: sorted(pid for pid, _ in f.top) for f in findings} == truth
    assert report.is_file() and "| product |" in report.read_text()
    for product in truth:
        png = report.parent / f"product_{product}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
