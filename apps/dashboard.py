"""The live dashboard: production-line business metrics and pipeline health, refreshed every 10 s.

A Flask app (the project's web framework already) with one page and one JSON
endpoint; the page draws its charts with plotly.js, served from the ``plotly``
wheel itself (no CDN, no npm step)::

    GET /                   the page (charts + health table; fetches /api/metrics every 10 s)
    GET /api/metrics        {"business": {...}, "health": [...], "as_of": iso-time}
    GET /static/plotly.min.js

Business metrics (from the aggregates the production-line consumer upserts,
see :mod:`apps.production_line`): units and defects per zone, first-pass yield
per zone and overall, units per simulated day, and the raw event count.

Pipeline health per (consumer, topic), from the JDBC sink's tables
(``pipeline_jdbc_health``, ``pipeline_jdbc_ledger``, written in each batch's
transaction) and Kafka: consumer lag (Kafka end offsets minus the offsets of the
last applied batch), rows/s over the last minute, last batch time, rows in the
topic's dead-letter topic ``<topic>.dlq`` and in the quarantine table.

All database reads of one ``/api/metrics`` answer run in one REPEATABLE READ
transaction, so the numbers shown are one consistent state of the database.

Run it with ``python cmd/dashboard_cmd.py`` (127.0.0.1, ``PIPELINE_DASHBOARD_PORT``).
"""
from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, send_file

from apps.production_line import FIRST_PASS_YIELD_SQL
from framework.local.postgres import PostgresTarget
from framework.log import get_logger
from framework.settings import Settings
from framework.sinks import jdbc_sql as q

REFRESH_SECONDS = 10
EXTENSION = "dashboard"
_log = get_logger("dashboard")


class Metrics:
    """Reads the metrics from PostgreSQL (and the end offsets from Kafka, when reachable)."""

    def __init__(self, target: PostgresTarget, settings: Settings) -> None:
        self.target = target
        self.settings = settings
        self._admin: Any = None
        self._lock = threading.Lock()

    def read(self) -> dict[str, Any]:
        with self.target.connect(timeout=5) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            existing = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            business = self._business(conn, existing)
            health = self._health(conn, existing)
            conn.rollback()
        self._add_kafka(health)
        return {"business": business, "health": health, "refresh_seconds": REFRESH_SECONDS,
                "as_of": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    @staticmethod
    def _business(conn: Any, existing: set[str]) -> dict[str, Any]:
        zones: list[dict[str, Any]] = []
        days: list[dict[str, Any]] = []
        if {"units_per_zone", "defects_per_zone"} <= existing:
            zones = [{"zone": z, "units": u, "defects": d, "first_pass_yield": y}
                     for z, u, d, y in conn.execute(FIRST_PASS_YIELD_SQL)]
            extra = conn.execute("SELECT zone, defects FROM defects_per_zone WHERE zone NOT IN "
                                 "(SELECT zone FROM units_per_zone)").fetchall()
            zones += [{"zone": z, "units": 0, "defects": d, "first_pass_yield": None} for z, d in extra]
        if "units_per_day" in existing:
            days = [{"day": d.isoformat(), "units": int(u or 0), "defects": int(f or 0)}
                    for d, u, f in conn.execute("SELECT day, units, defects FROM units_per_day ORDER BY day")]
        units = sum(z["units"] for z in zones)
        defects = sum(z["defects"] for z in zones)
        events = (conn.execute("SELECT count(*) FROM production_events").fetchone()[0]
                  if "production_events" in existing else 0)
        return {"zones": zones, "days": days, "units": units, "defects": defects, "events": events,
                "first_pass_yield": (1 - defects / units) if units else None}

    @staticmethod
    def _health(conn: Any, existing: set[str]) -> list[dict[str, Any]]:
        if q.HEALTH_TABLE not in existing:
            return []
        rows = conn.execute(
            f"SELECT h.consumer, h.topic, h.batches, h.rows, h.quarantined, h.last_batch_at, h.end_offsets, "
            f"(SELECT coalesce(sum(l.rows), 0) FROM {q.LEDGER_TABLE} l WHERE l.consumer = h.consumer AND "
            f"l.target LIKE h.topic || '/%%' AND l.target NOT LIKE '%%_quarantine' "
            f"AND l.applied_at > now() - interval '60 seconds') FROM {q.HEALTH_TABLE} h ORDER BY 1, 2").fetchall()
        return [{"consumer": c, "topic": t, "batches": b, "rows": r, "quarantined": qn,
                 "last_batch_at": at.isoformat(timespec="seconds") if at else None,
                 "end_offsets": (eo or {}).get(t, {}), "rows_per_second": round(float(recent) / 60, 2)}
                for c, t, b, r, qn, at, eo, recent in rows]

    def _add_kafka(self, health: list[dict[str, Any]]) -> None:
        """Lag and dead-letter counts from Kafka; ``None`` when Kafka cannot be asked."""
        for row in health:
            row["lag"], row["dead_lettered"] = None, None
        if not health:
            return
        try:
            with self._lock:
                if self._admin is None:
                    from framework.admin import KafkaAdmin

                    self._admin = KafkaAdmin(self.settings)
                topics = set(self._admin.list_topics())
                for row in health:
                    if row["topic"] in topics:
                        end = self._admin.end_offsets(row["topic"])
                        done = {int(p): int(o) for p, o in row["end_offsets"].items()}
                        row["lag"] = sum(max(0, e - done.get(p, 0)) for p, e in end.items())
                    dlq = f"{row['topic']}.dlq"
                    row["dead_lettered"] = sum(self._admin.end_offsets(dlq).values()) if dlq in topics else 0
        except Exception as exc:  # noqa: BLE001 - the health panel shows "n/a" instead of failing the page
            _log.debug("Kafka not readable for the health panel: {}", exc)
            self.close()

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            finally:
                self._admin = None


def create_dashboard(target: PostgresTarget, settings: Settings | None = None) -> Flask:
    """The dashboard app reading ``target`` (no I/O until a request)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.extensions[EXTENSION] = Metrics(target, settings)
    app.add_url_rule("/", "page", lambda: Response(PAGE, mimetype="text/html"))
    app.add_url_rule("/api/metrics", "metrics", _metrics)
    app.add_url_rule("/static/plotly.min.js", "plotly", _plotly)
    app.add_url_rule("/favicon.ico", "favicon", lambda: Response(status=204))
    return app


def _metrics() -> Response:
    from flask import current_app

    try:
        return jsonify(current_app.extensions[EXTENSION].read())
    except Exception as exc:  # noqa: BLE001 - shown on the page as one sentence
        response = jsonify(error=" ".join(str(exc).split()))
        response.status_code = 503
        return response


def _plotly() -> Response:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    response = send_file(path, mimetype="text/javascript", max_age=3600)
    return response


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Production line - pipeline dashboard</title>
<script src="/static/plotly.min.js"></script>
<style>
 body{font-family:system-ui,sans-serif;margin:16px;background:#f6f7f9;color:#222}
 h1{font-size:20px;margin:0 0 8px} .sub{color:#666;font-size:13px}
 .kpis{display:flex;gap:12px;margin:12px 0} .kpi{background:#fff;border-radius:8px;padding:10px 16px;min-width:150px;
 box-shadow:0 1px 2px #0002} .kpi b{display:block;font-size:26px} .kpi span{font-size:12px;color:#666}
 .grid{display:grid;grid-template-columns:1fr 1fr;gap:12px} .card{background:#fff;border-radius:8px;padding:6px;
 box-shadow:0 1px 2px #0002} .chart{height:260px}
 table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
 td,th{padding:6px 8px;border-bottom:1px solid #eee;text-align:right}
 th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left} #error{color:#b00}
</style></head><body>
<h1>Production line</h1><div class="sub">refreshed every 10 s &middot; as of <span id="as-of">-</span>
<span id="error"></span></div>
<div class="kpis">
 <div class="kpi"><b id="kpi-units" data-value="">-</b><span>units produced</span></div>
 <div class="kpi"><b id="kpi-defects" data-value="">-</b><span>defects</span></div>
 <div class="kpi"><b id="kpi-fpy" data-value="">-</b><span>first-pass yield</span></div>
 <div class="kpi"><b id="kpi-events" data-value="">-</b><span>events in PostgreSQL</span></div>
</div>
<div class="grid">
 <div class="card"><div id="chart-units" class="chart"></div></div>
 <div class="card"><div id="chart-defects" class="chart"></div></div>
 <div class="card"><div id="chart-fpy" class="chart"></div></div>
 <div class="card"><div id="chart-days" class="chart"></div></div>
</div>
<h2 style="font-size:16px">Pipeline health</h2>
<table id="health"><thead><tr><th>consumer</th><th>topic</th><th>lag</th><th>rows/s (1 min)</th><th>rows</th>
<th>batches</th><th>last batch</th><th>dead-lettered</th><th>quarantined</th></tr></thead><tbody></tbody></table>
<script>
const fmt = n => n === null || n === undefined ? 'n/a' : Number(n).toLocaleString('en-US');
const pct = x => x === null || x === undefined ? 'n/a' : (100 * x).toFixed(2) + '%';
const layout = t => ({title: {text: t, font: {size: 14}}, margin: {l: 50, r: 10, t: 36, b: 40}});
function kpi(id, value, text) {
  const e = document.getElementById(id); e.dataset.value = value ?? ''; e.textContent = text;
}
function bar(id, title, xs, ys, color) {
  Plotly.react(id, [{type: 'bar', x: xs, y: ys, marker: {color: color}}], layout(title), {displayModeBar: false});
}
async function refresh() {
  try {
    const r = await fetch('/api/metrics', {cache: 'no-store'});
    const m = await r.json();
    if (!r.ok) { document.getElementById('error').textContent = ' - ' + m.error; return; }
    document.getElementById('error').textContent = '';
    const b = m.business, zones = b.zones.map(z => z.zone);
    kpi('kpi-units', b.units, fmt(b.units)); kpi('kpi-defects', b.defects, fmt(b.defects));
    kpi('kpi-fpy', b.first_pass_yield, pct(b.first_pass_yield)); kpi('kpi-events', b.events, fmt(b.events));
    bar('chart-units', 'Units per zone', zones, b.zones.map(z => z.units), '#3b7dd8');
    bar('chart-defects', 'Defects per zone', zones, b.zones.map(z => z.defects), '#d8553b');
    bar('chart-fpy', 'First-pass yield per zone (%)', zones, b.zones.map(z => z.first_pass_yield === null ? null
        : 100 * z.first_pass_yield), '#3bb07d');
    Plotly.react('chart-days', [{type: 'scatter', mode: 'lines+markers', x: b.days.map(d => d.day),
        y: b.days.map(d => d.units), name: 'units'}, {type: 'bar', x: b.days.map(d => d.day),
        y: b.days.map(d => d.defects), name: 'defects'}], {...layout('Units and defects per day'),
        xaxis: {type: 'category'}}, {displayModeBar: false});
    const body = document.querySelector('#health tbody');
    body.innerHTML = m.health.map(h => `<tr data-topic="${h.topic}"><td>${h.consumer}</td><td>${h.topic}</td>
      <td class="lag">${fmt(h.lag)}</td><td>${h.rows_per_second}</td><td class="rows">${fmt(h.rows)}</td>
      <td>${fmt(h.batches)}</td><td>${h.last_batch_at ?? 'n/a'}</td><td>${fmt(h.dead_lettered)}</td>
      <td class="quarantined">${fmt(h.quarantined)}</td></tr>`).join('');
    document.getElementById('as-of').textContent = m.as_of;
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) { document.getElementById('error').textContent = ' - ' + e; }
}
refresh(); setInterval(refresh, 10000);
</script></body></html>
"""


# ------------------------------------------------------------------ command
def _main(args: Any, settings: Settings) -> int:
    from apps.api import serve_in_thread
    from framework.local.postgres import LocalPostgres, postgres_target

    started = None
    if settings.uses_local_postgres:
        pg = LocalPostgres.from_settings(settings)
        if not pg.running_pid():
            started = pg.start()
    target = postgres_target(settings)
    app = create_dashboard(target, settings)
    port = args.port if args.port is not None else settings.dashboard_port
    server = serve_in_thread(app, settings.dashboard_host, port)
    print(f"dashboard at {server.url}/ (reading {target.safe_url}; refreshed every {REFRESH_SECONDS} s); "
          "Ctrl-C stops it", flush=True)
    try:
        server.serve_until_signal()
    finally:
        app.extensions[EXTENSION].close()
        if started is not None:
            started.stop()
    return 0


def main(argv: Any = None) -> int:
    from framework import cli

    p = cli.parser("Serve the live dashboard (production-line metrics and pipeline health) on 127.0.0.1; starts the "
                   "local PostgreSQL when PIPELINE_POSTGRES_URL is empty and it is not running.")
    p.add_argument("--port", type=cli.port(allow_zero=False), default=None,
                   help="port (default PIPELINE_DASHBOARD_PORT, 8050)")
    return cli.run(p, _main, argv)
