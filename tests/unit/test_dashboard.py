"""The dashboard app without a database: page, bundled plotly.js, metrics endpoint, errors as one sentence."""
from __future__ import annotations

from apps.dashboard import EXTENSION, REFRESH_SECONDS, create_dashboard
from framework.errors import PostgresError
from framework.local.postgres import PostgresTarget

TARGET = PostgresTarget("127.0.0.1", 1, "pipeline", "pipeline", "x")


def test_page_refreshes_every_10s_and_uses_the_bundled_plotly():
    client = create_dashboard(TARGET).test_client()
    page = client.get("/").data.decode()
    assert REFRESH_SECONDS == 10 and "setInterval(refresh, 10000)" in page
    assert '<script src="/static/plotly.min.js">' in page and "cdn" not in page.lower()
    for element in ("kpi-units", "kpi-defects", "kpi-fpy", "chart-units", "chart-defects", "chart-fpy",
                    "chart-days", "health"):
        assert f'id="{element}"' in page
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.data) > 1_000_000 and js.mimetype == "text/javascript"
    js.close()


def test_metrics_endpoint_serves_what_the_reader_returns(mocker):
    app = create_dashboard(TARGET)
    snapshot = {"business": {"units": 3, "defects": 1, "zones": [], "days": []}, "health": [], "as_of": "t"}
    mocker.patch.object(app.extensions[EXTENSION], "read", return_value=snapshot)
    assert app.test_client().get("/api/metrics").get_json() == snapshot


def test_unreachable_database_is_a_503_with_one_sentence(mocker):
    app = create_dashboard(TARGET)
    mocker.patch.object(app.extensions[EXTENSION], "read",
                        side_effect=PostgresError(
                            "PostgreSQL at postgresql://x cannot be reached (refused); start it."))
    answer = app.test_client().get("/api/metrics")
    assert answer.status_code == 503 and answer.get_json()["error"].startswith("PostgreSQL at")
