"""data_source/generate.py: deterministic output, the shipped files, the planted drivers."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data_source"
FILES = ("metrics.json", "workorder.json", "ground_truth.json")


def _load_generator():
    spec = importlib.util.spec_from_file_location("data_source_generate", DATA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
SMALL = generate.Options(hours=0.5, params=8, products=2, drivers=2, run_min=3, run_max=6)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy)


def correlations(data_dir: Path, period: float = 60.0) -> dict[int, dict[int, float]]:
    """product -> parameter -> correlation of the parameter's period mean with production."""
    sums: dict[tuple[int, int], list[float]] = {}
    for m in read_jsonl(data_dir / "metrics.json"):
        acc = sums.setdefault((int(seconds(m["time"]) // period), m["id"]), [0.0, 0])
        acc[0] += m["val"]
        acc[1] += 1
    params = sorted({p for _, p in sums})
    workorders = read_jsonl(data_dir / "workorder.json")
    result: dict[int, dict[int, float]] = {}
    for product in sorted({w["product"] for w in workorders}):
        rows = [w for w in workorders if w["product"] == product]
        slots = [int(seconds(w["time"]) // period) for w in rows]
        production = [w["production"] for w in rows]
        result[product] = {
            p: pearson([sums[(s, p)][0] / sums[(s, p)][1] for s in slots], production) for p in params}
    return result


def test_two_runs_are_byte_identical(tmp_path: Path) -> None:
    generate.generate(tmp_path / "a", SMALL)
    generate.generate(tmp_path / "b", SMALL)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    generate.generate(tmp_path / "c", generate.Options(**{**SMALL.__dict__, "seed": 1}))
    assert (tmp_path / "a" / "metrics.json").read_bytes() != (tmp_path / "c" / "metrics.json").read_bytes()


def test_the_shipped_files_are_the_default_output(tmp_path: Path) -> None:
    summary = generate.generate(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), \
            f"data_source/{name} differs from `python data_source/generate.py`; regenerate it"
    assert 15_000 <= summary.metrics <= 25_000
    assert 100 <= summary.workorders <= 1000


def test_records_have_the_documented_schema_and_are_only_slightly_out_of_order(tmp_path: Path) -> None:
    summary = generate.generate(tmp_path, SMALL)
    metrics = read_jsonl(tmp_path / "metrics.json")
    workorders = read_jsonl(tmp_path / "workorder.json")
    assert len(metrics) == summary.metrics and len(workorders) == summary.workorders
    for m in metrics:
        assert list(m) == ["id", "time", "val"]
        assert isinstance(m["id"], int) and isinstance(m["val"], float)
        assert m["time"].endswith("Z") and len(m["time"]) == len("2026-01-05T08:00:00.000Z")
    for w in workorders:
        assert list(w) == ["time", "product", "production"]
        assert isinstance(w["product"], int) and isinstance(w["production"], int)
    assert {m["id"] for m in metrics} == set(range(1, SMALL.params + 1))
    assert len(workorders) == round(SMALL.hours * 60)
    times = [m["time"] for m in metrics]
    assert times != sorted(times)  # shuffled, so the API's sorting is exercised
    late = max(seconds(a) - seconds(b) for a, b in zip(times, times[1:], strict=False))
    assert 0 < late <= generate._METRICS_LATE + 0.1  # ... but only slightly


def test_records_option_scales_the_metrics(tmp_path: Path) -> None:
    summary = generate.generate(tmp_path, generate.Options(records=5000))
    assert 5000 <= summary.metrics <= 5000 * 1.05


def test_ground_truth_names_distinct_parameters_per_product() -> None:
    truth = json.loads((DATA / "ground_truth.json").read_text(encoding="utf-8"))
    assert sorted(truth) == ["1", "2", "3", "4"]
    ids = [p for params in truth.values() for p in params]
    assert all(len(params) == 3 for params in truth.values())
    assert len(set(ids)) == len(ids) and all(1 <= p <= 24 for p in ids)


def test_planted_parameters_drive_production_in_the_shipped_data() -> None:
    truth = {int(k): v for k, v in json.loads((DATA / "ground_truth.json").read_text()).items()}
    for product, by_param in correlations(DATA).items():
        planted = [by_param[p] for p in truth[product]]
        others = [abs(r) for p, r in by_param.items() if p not in truth[product]]
        assert min(planted) > 0.6, (product, planted)
        assert min(planted) > max(others) + 0.2, (product, planted, max(others))


def test_bad_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="too few"):
        generate.generate(tmp_path, generate.Options(params=5, products=2, drivers=3))
    assert generate.main([str(tmp_path), "--params", "5", "--products", "2"]) == 2
    assert "too few" in capsys.readouterr().err
