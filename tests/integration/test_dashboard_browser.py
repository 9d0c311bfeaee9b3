"""The production-line demo end to end, seen in a real browser (Debian's headless chromium).

One run of ``cmd/production_line_cmd.py`` on the session's broker and a fresh
database of the session's PostgreSQL: while events flow, chromium loads the
dashboard, two screenshots are taken 15 s apart, and the numbers shown must have
changed and be states the database held. Then the demo is SIGKILLed mid-stream
and run again: it must finish with counts equal to the simulation's answer key.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from framework.local.kafka_broker import free_port
from framework.local.postgres import PostgresTarget
from framework.sources.production_line import ProductionLine
from tests.integration.pipeline_procs import Proc, pipeline_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(3600)]

EVENTS, SEED, RATE, PER_TRIGGER = 2400, 11, 20, 300
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
# playwright's launch() gives chromium a fresh temporary --user-data-dir itself (it refuses the flag)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT_DIR = (Path(os.environ.get("DASHBOARD_SCREENSHOT_DIR", ""))
                  if os.environ.get("DASHBOARD_SCREENSHOT_DIR") else None)


def _db_state(conn) -> tuple[int, int, int]:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    units = defects = events = 0
    if {"units_per_zone", "defects_per_zone", "production_events"} <= tables:
        units = conn.execute("SELECT coalesce(sum(units), 0) FROM units_per_zone").fetchone()[0]
        defects = conn.execute("SELECT coalesce(sum(defects), 0) FROM defects_per_zone").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM production_events").fetchone()[0]
    conn.rollback()
    return int(units), int(defects), int(events)


class StateRecorder:
    """Polls the database every 0.2 s and keeps every (units, defects, events) state it saw."""

    def __init__(self, target: PostgresTarget) -> None:
        self.target, self.states, self._stop = target, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.target.connect(autocommit=False) as conn:
            while not self._stop.wait(0.2):
                self.states.add(_db_state(conn))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def _shown(page) -> tuple[int, int, int]:
    return tuple(int(page.get_attribute(f"#kpi-{k}", "data-value") or 0) for k in ("units", "defects", "events"))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make chromium)")
def test_dashboard_in_chromium_while_events_flow_then_sigkill_and_rerun_are_exact(kafka_broker, local_postgres,
                                                                                   tmp_path):
    from playwright.sync_api import sync_playwright

    database = f"demo_{uuid.uuid4().hex[:8]}"
    with local_postgres.target.connect(autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    base = local_postgres.target
    target = PostgresTarget(base.host, base.port, database, base.user, base.password)
    port = free_port()
    env = pipeline_env(kafka_bootstrap_servers=kafka_broker.bootstrap_servers, postgres_url=target.url,
                       api_port=free_port(), dashboard_port=port, output_dir=tmp_path / "out",
                       state_dir=tmp_path / "state", checkpoint_dir=tmp_path / "checkpoints",
                       max_offsets_per_trigger=PER_TRIGGER)
    args = ["--events", str(EVENTS), "--seed", str(SEED), "--rate", str(RATE)]
    log = tmp_path / "demo.log"
    demo = Proc("demo", "production_line_cmd.py", args, env, log)
    try:
        wait_until(lambda: "dashboard: http://" in demo.text(), 300, "the dashboard URL", [demo])
        url = re.search(r"dashboard: (http://\S+)", demo.text()).group(1)
        with target.connect() as conn:
            wait_until(lambda: _db_state(conn)[0] > 0, 600, "the first rows in PostgreSQL", [demo])
        with StateRecorder(target) as recorder, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            t0 = time.monotonic()
            page.goto(url, wait_until="load")
            page.wait_for_selector("body[data-refreshed]", timeout=20_000)
            print(f"dashboard page load with its first metrics: {time.monotonic() - t0:.2f}s")
            first = _shown(page)
            page.screenshot(path=str(tmp_path / "dashboard-1.png"), full_page=True)
            page.wait_for_timeout(15_000)
            page.wait_for_function("Number(document.body.dataset.refreshed) >= 2", timeout=20_000)
            deadline = time.monotonic() + 180  # a loaded machine may take longer than 15 s for the next batch
            while _shown(page) == first and time.monotonic() < deadline:
                page.wait_for_timeout(2_000)
            second = _shown(page)
            page.screenshot(path=str(tmp_path / "dashboard-2.png"), full_page=True)
            health_rows = page.locator("#health tbody tr").count()
            lag_text = page.locator("#health tbody tr td.lag").first.inner_text()
            browser.close()
        print(f"shown: {first} then {second}; database states seen: {len(recorder.states)}")
        assert second != first and second[0] >= first[0]  # the numbers changed while events flowed
        assert first in recorder.states and second in recorder.states  # and each is a state the database held
        assert first[0] > 0 and health_rows == 1 and lag_text != ""
        if SCREENSHOT_DIR is not None:
            shutil.copy(tmp_path / "dashboard-2.png", SCREENSHOT_DIR / "dashboard.png")

        assert demo.kill() == -signal.SIGKILL  # a crash mid-stream ...
        rerun = Proc("demo-rerun", "production_line_cmd.py", args, env, log)
        demo = rerun
        assert rerun.wait(900) == 0, rerun.describe()
    finally:
        demo.cleanup()
    text = log.read_text()
    assert "exact: equal to the simulation's answer key" in text.split("demo-rerun")[-1]
    expected = ProductionLine(seed=SEED, records=EVENTS).totals()
    with target.connect() as conn:  # ... and the rerun ends with every count exact
        assert _db_state(conn) == (sum(expected["units"].values()), sum(expected["defects"].values()), EVENTS)
        assert dict(conn.execute("SELECT zone, units FROM units_per_zone").fetchall()) == expected["units"]
        assert conn.execute("SELECT count(DISTINCT (kafka_partition, kafka_offset)) FROM production_events"
                            ).fetchone()[0] == EVENTS
