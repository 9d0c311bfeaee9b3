"""The dashboard app without a database: page, compression and ETag, both endpoints, errors as one sentence."""
from __future__ import annotations

from apps.dashboard import EXTENSION, REFRESH_SECONDS, create_dashboard
from framework.errors import PostgresError
from framework.local.postgres import PostgresTarget

TARGET = PostgresTarget("127.0.0.1", 1, "pipeline", "pipeline", "x")


def test_page_refreshes_every_10s_and_needs_no_script_bundle():
    client = create_dashboard(TARGET).test_client()
    page = client.get("/").data.decode()
    assert REFRESH_SECONDS == 10 and "setInterval(refresh, 10000)" in page
    assert "<script src" not in page and "<link" not in page and "cdn" not in page.lower()  # nothing blocks paint
    for element in ("kpi-units", "kpi-defects", "kpi-fpy", "chart-units", "chart-defects", "chart-fpy",
                    "chart-days", "health"):
        assert f'id="{element}"' in page
    assert "fetch('/api/metrics'" in page and "fetch('/api/lag'" in page


def test_page_is_gzipped_and_revalidated_with_its_etag():
    client = create_dashboard(TARGET).test_client()
    first = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert first.headers["Content-Encoding"] == "gzip" and "no-cache" in first.headers["Cache-Control"]
    assert int(first.headers["Content-Length"]) < len(create_dashboard(TARGET).test_client().get("/").data) / 2
    etag = first.headers["ETag"]
    again = client.get("/", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""


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


def test_lag_endpoint_is_separate_from_the_metrics(mocker):
    app = create_dashboard(TARGET)
    metrics = app.extensions[EXTENSION]
    read = mocker.patch.object(metrics, "read")
    lag = [{"consumer": "c", "topic": "t", "lag": 4, "dead_lettered": 0}]
    mocker.patch.object(metrics, "lag", return_value=lag)
    answer = app.test_client().get("/api/lag")
    assert answer.get_json() == {"lag": lag} and "no-store" in answer.headers["Cache-Control"]
    assert not read.called  # the Kafka figures never wait on, nor hold back, the database read
