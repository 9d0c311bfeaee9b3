"""The dashboard page in Debian's headless chromium, its data from a stand-in reader (no database, no Kafka).

What it shows: the charts are drawn from ``/api/metrics`` while ``/api/lag`` (Kafka)
is still answering, so a slow broker never holds the page back; the SVG bars carry
the values they were drawn from; the lag cells fill in once Kafka answers.
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from apps.api import serve_in_thread
from apps.dashboard import EXTENSION, create_dashboard
from framework.local.postgres import PostgresTarget

pytestmark = [pytest.mark.integration]

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ZONES = [("assembly", 500, 20), ("cutting", 480, 31), ("painting", 510, 0)]
SNAPSHOT = {
    "business": {"zones": [{"zone": z, "units": u, "defects": d, "first_pass_yield": 1 - d / u} for z, u, d in ZONES],
                 "days": [{"day": "2026-01-05", "units": 900, "defects": 30}, {"day": "2026-01-06", "units": 590,
                                                                                "defects": 21}],
                 "units": 1490, "defects": 51, "events": 1541, "first_pass_yield": 1 - 51 / 1490},
    "health": [{"consumer": "production-line", "topic": "production_line", "batches": 4, "rows": 1541,
                "quarantined": 0, "last_batch_at": "2026-12-04T18:00:00+00:00", "rows_per_second": 25.7}],
    "as_of": "2026-12-04T18:00:01+00:00"}


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make chromium)")
def test_charts_are_drawn_before_a_slow_kafka_answers_then_the_lag_fills_in(mocker):
    from playwright.sync_api import sync_playwright

    app = create_dashboard(PostgresTarget("127.0.0.1", 1, "pipeline", "pipeline", "x"))
    metrics = app.extensions[EXTENSION]
    kafka_may_answer = threading.Event()

    def slow_lag():
        kafka_may_answer.wait(60)
        return [{"consumer": "production-line", "topic": "production_line", "lag": 17, "dead_lettered": 2}]

    mocker.patch.object(metrics, "read", return_value=SNAPSHOT)
    mocker.patch.object(metrics, "lag", side_effect=slow_lag)
    server = serve_in_thread(app, "127.0.0.1", 0)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url + "/", wait_until="commit")
            page.wait_for_function("document.querySelectorAll('.chart svg').length === 4", timeout=20_000)
            assert not kafka_may_answer.is_set()  # drawn while /api/lag is still waiting on "Kafka"
            bars = [float(v) for v in page.eval_on_selector_all("#chart-units rect[data-value]",
                                                               "els => els.map(e => e.dataset.value)")]
            assert bars == [u for _, u, _ in ZONES]
            assert page.get_attribute("#kpi-units", "data-value") == "1490"
            assert page.locator("#health td.lag").inner_text() == "..."
            kafka_may_answer.set()
            t0 = time.monotonic()
            page.wait_for_function("document.querySelector('#health td.lag').textContent === '17'", timeout=30_000)
            assert page.locator("#health td.dlq").inner_text() == "2" and time.monotonic() - t0 < 30
            browser.close()
    finally:
        kafka_may_answer.set()
        server.stop()
