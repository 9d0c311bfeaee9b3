"""Section ``dashboard``: the dashboard's first load in Debian's headless chromium; target < 2 s.

The dashboard (:mod:`apps.dashboard`) is served against the benchmark's
PostgreSQL (:attr:`bench.environment.BenchEnvironment.postgres`). When the
production-line tables are not there yet (the section runs alone), ``rows``
production-line events are first written through the real sink with the
demo's three aggregates, so the page has every chart and a health row to draw.

Each load uses a fresh browser context (cold cache): the time from navigation
to the four charts drawn with the first metrics, and the first contentful paint
(the browser's own ``first-contentful-paint`` entry). Medians of ``loads``;
skipped (a row saying so) when Debian's chromium or playwright is missing.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.report import BenchReport, Figure, value_below
from framework.log import get_logger

log = get_logger("bench")
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_S = 2.0
DRAWN = "document.body.dataset.refreshed && document.querySelectorAll('.chart svg').length === 4"
PAINT = "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0] ?? null"
WEIGHT = ("performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
          ".reduce((n, e) => n + (e.transferSize || 0), 0)")


@dataclass(frozen=True)
class DashboardOptions:
    loads: int = 3
    rows: int = 20_000


def run_dashboard(env: Any, options: DashboardOptions, report: BenchReport) -> None:
    chromium = next((c for c in CHROMIUM if os.path.exists(c)), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        report.figures.append(Figure("dashboard", "page load to the charts drawn (chromium, cold cache)", "s", None,
                                     None, "", f"< {TARGET_S:g} s", None,
                                     "skipped: Debian's chromium (make chromium) or playwright is not installed"))
        return
    from apps.api import serve_in_thread
    from apps.dashboard import EXTENSION, create_dashboard

    target = env.postgres
    _seed(env, target, options.rows)
    app = create_dashboard(target, env.settings)
    server = serve_in_thread(app, "127.0.0.1", 0)
    loads, paints, weights = [], [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=FLAGS)
            for i in range(options.loads):
                context = browser.new_context(viewport={"width": 1280, "height": 900})  # a cold cache each time
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(server.url + "/", wait_until="commit", timeout=120_000)
                page.wait_for_function(DRAWN, timeout=120_000, polling=20)
                loads.append(time.perf_counter() - t0)
                paint = page.evaluate(PAINT)
                paints.append(paint / 1000 if paint is not None else float("nan"))
                weights.append(page.evaluate(WEIGHT))
                log.info("dashboard load {}: charts drawn after {:.2f}s, first paint {:.2f}s, {:,} bytes "
                         "transferred", i + 1, loads[-1], paints[-1], weights[-1])
                context.close()
            browser.close()
    finally:
        server.stop()
        app.extensions[EXTENSION].close()
    load = statistics.median(loads)
    note = f"median of {options.loads}; ratio = time / the {TARGET_S:g} s budget"
    report.figures.append(Figure("dashboard", "page load to the charts drawn (chromium, cold cache)", "s", load,
                                 TARGET_S, "target", f"< {TARGET_S:g} s", value_below(load, TARGET_S), note))
    report.figures.append(Figure("dashboard", "first contentful paint", "s", statistics.median(paints), None, "", "",
                                 None, f"page weight {statistics.median(weights):,.0f} bytes transferred"))


def _seed(env: Any, target: Any, rows: int) -> None:
    """Write ``rows`` production-line events with the demo's aggregates unless its tables exist already."""
    from apps.production_line import AGGREGATIONS
    from bench.jdbc import TOPIC, production_frame
    from framework.sinks.jdbc import JdbcWriter

    with target.connect() as conn:
        if conn.execute("SELECT to_regclass('units_per_zone')").fetchone()[0] is not None:
            return
    df = production_frame(env.spark, rows)
    writer = JdbcWriter("production_events", aggregations=AGGREGATIONS, url=target.url)._bind(
        env.settings, "production-line")
    writer.prepare(TOPIC, fresh_checkpoint=True)
    writer.write_batch(df, 0, TOPIC)
    df.unpersist()
    log.info("dashboard: {:,} production-line events written into {} for the page to show", rows, target.safe_url)
