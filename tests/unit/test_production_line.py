"""The simulated production line and its API endpoint, without a broker."""
from __future__ import annotations

import orjson
import pytest

from apps.api import create_app
from apps.production_line import ENDPOINT, register
from framework.errors import SettingsError
from framework.sources.production_line import ProductionLine


def test_events_are_a_pure_function_of_seed_and_position():
    a, b = ProductionLine(seed=7), ProductionLine(seed=7)
    assert [a.event(p) for p in range(200)] == [b.event(p) for p in range(200)]
    assert [a.event(p) for p in range(50)] != [ProductionLine(seed=8).event(p) for p in range(50)]
    assert a.event(0) == {"kind": "unit", "unit_id": "U00000000", "zone": a.event(0)["zone"],
                          "point": a.event(0)["point"], "time": "2026-01-05T06:00:00.000Z"}
    assert a.event(1441)["time"] == "2026-01-06T06:01:00.000Z"  # one simulated minute per event


def test_a_defect_follows_its_unit_in_the_same_zone_at_most_once():
    line = ProductionLine(seed=3)
    defects = [(p, line.event(p)) for p in range(20_000) if line.event(p)["kind"] == "defect"]
    assert defects and all(p % 2 == 1 for p, _ in defects)
    for p, d in defects:
        unit = line.event(p - 1)
        assert ((unit["kind"], unit["unit_id"], unit["zone"], unit["point"])
                == ("unit", d["unit_id"], d["zone"], d["point"]))
    totals = line.totals(20_000)
    for zone, rate in line.defect_rate.items():  # about defect_rate of the units of a zone are defective
        assert abs(totals["defects"][zone] / totals["units"][zone] - rate) < 0.02
    assert sum(totals["units"].values()) + sum(totals["defects"].values()) == 20_000


@pytest.mark.parametrize("kwargs", [dict(rate=0), dict(interval=-1), dict(records=-1),
                                    dict(defect_rate={"a": 0.9}, zone_weights={"a": 1.0}),
                                    dict(defect_rate={"a": 0.1}, zone_weights={"b": 1.0})])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(SettingsError):
        ProductionLine(**kwargs)


def test_endpoint_serves_positions_and_resumes_from(tmp_path):
    (tmp_path / "data").mkdir()
    line = ProductionLine(seed=5, records=30)
    client = register(create_app(data_dir=tmp_path / "data", delay=0), line).test_client()
    whole = client.get(ENDPOINT + "?delay=0")
    assert whole.status_code == 200 and whole.headers["X-Stream-Records"] == "30"
    records = [orjson.loads(x) for x in whole.data.splitlines()]
    assert [r["_position"] for r in records] == list(range(30))
    assert {k: v for k, v in records[12].items() if k != "_position"} == line.event(12)
    tail = [orjson.loads(x) for x in client.get(ENDPOINT + "?from=25&delay=0").data.splitlines()]
    assert tail == records[25:]
    assert len(client.get(ENDPOINT + "?from=3&limit=4&delay=0").data.splitlines()) == 4
    assert client.get(ENDPOINT + "?from=-1").status_code == 400
    assert client.get(ENDPOINT + "?from=31").status_code == 400
