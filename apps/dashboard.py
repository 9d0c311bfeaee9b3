"""The live dashboard: production-line business metrics and pipeline health, refreshed every 10 s.

A Flask app (the project's web framework already) with one page and two JSON
endpoints; the page draws its charts itself as inline SVG (bars and a line, a
few dozen lines of script in the page), so a first load is one small HTML
answer and no chart library to fetch or parse::

    GET /                   the page (charts + health table; fetches the two endpoints every 10 s)
    GET /api/metrics        {"business": {...}, "health": [...], "as_of": iso-time}   (PostgreSQL only)
    GET /api/lag            {"lag": [{"consumer", "topic", "lag", "dead_lettered"}, ...]}  (asks Kafka)

First paint, then data: the page has no blocking script or stylesheet; its
script asks for both endpoints at once and draws the metrics as soon as
PostgreSQL answers, while the Kafka figures (lag, dead-lettered), which may take
the admin client's timeouts when Kafka is slow or down, fill their cells when
they come. Answers are gzip-compressed (flask-compress) and the page carries an
ETag with ``Cache-Control: no-cache``, so a reload is a 304.

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
from typing import Any

from flask import Flask, Response, jsonify, request

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
        """Business metrics and the health rows, from PostgreSQL only (one REPEATABLE READ transaction)."""
        with self.target.connect(timeout=5) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            existing = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            business = self._business(conn, existing)
            health = self._health(conn, existing)
            conn.rollback()
        return {"business": business, "health": health, "refresh_seconds": REFRESH_SECONDS,
                "as_of": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}

    def lag(self) -> list[dict[str, Any]]:
        """Per (consumer, topic): consumer lag and dead-lettered records from Kafka (``None`` when it cannot say)."""
        with self.target.connect(timeout=5) as conn:
            existing = {r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
            rows = (conn.execute(f"SELECT consumer, topic, end_offsets FROM {q.HEALTH_TABLE} ORDER BY 1, 2"
                                 ).fetchall() if q.HEALTH_TABLE in existing else [])
        health = [{"consumer": c, "topic": t, "end_offsets": (eo or {}).get(t, {})} for c, t, eo in rows]
        self._add_kafka(health)
        return [{k: h[k] for k in ("consumer", "topic", "lag", "dead_lettered")} for h in health]

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
    """The dashboard app reading ``target`` (no I/O until a request); answers gzip-compressed."""
    from flask_compress import Compress

    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(COMPRESS_MIMETYPES=["text/html", "application/json"], COMPRESS_MIN_SIZE=500,
                      COMPRESS_ALGORITHM=["gzip"])
    Compress(app)
    app.extensions[EXTENSION] = Metrics(target, settings)
    app.add_url_rule("/", "page", _page)
    app.add_url_rule("/api/metrics", "metrics", lambda: _answer(lambda m: m.read()))
    app.add_url_rule("/api/lag", "lag", lambda: _answer(lambda m: {"lag": m.lag()}))
    app.add_url_rule("/favicon.ico", "favicon", lambda: Response(status=204))
    return app


def _page() -> Response:
    """The page, with an ETag (a reload is a 304) and ``no-cache`` (always revalidated)."""
    response = Response(PAGE, mimetype="text/html")
    response.cache_control.no_cache = True
    response.add_etag()
    return response.make_conditional(request)


def _answer(read: Any) -> Response:
    from flask import current_app

    try:
        response = jsonify(read(current_app.extensions[EXTENSION]))
    except Exception as exc:  # noqa: BLE001 - shown on the page as one sentence
        response = jsonify(error=" ".join(str(exc).split()))
        response.status_code = 503
    response.cache_control.no_store = True
    return response


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Production line - pipeline dashboard</title>
<style>
 body{font-family:system-ui,sans-serif;margin:16px;background:#f6f7f9;color:#222}
 h1{font-size:20px;margin:0 0 8px} .sub{color:#666;font-size:13px}
 .kpis{display:flex;gap:12px;margin:12px 0} .kpi{background:#fff;border-radius:8px;padding:10px 16px;min-width:150px;
 box-shadow:0 1px 2px #0002} .kpi b{display:block;font-size:26px} .kpi span{font-size:12px;color:#666}
 .grid{display:grid;grid-template-columns:1fr 1fr;gap:12px} .card{background:#fff;border-radius:8px;padding:6px;
 box-shadow:0 1px 2px #0002} .chart{height:260px} .chart svg{display:block;width:100%;height:100%}
 .chart text{font-size:11px;fill:#444} .chart .title{font-size:14px;fill:#222} .chart .grid-line{stroke:#e6e6e6}
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
const esc = s => String(s).replace(/[&<>"']/g, c => '&#' + c.charCodeAt(0) + ';');
const NS = 'http://www.w3.org/2000/svg';
let lag = {};
function kpi(id, value, text) {
  const e = document.getElementById(id); e.dataset.value = value ?? ''; e.textContent = text;
}
function el(parent, tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  parent.appendChild(e); return e;
}
function ceiling(max) {  // a round top for the y axis (ticks at its quarters): 1, 2, 3, 4, 5, 6, 8 or 10 x 10^k
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  return [1, 2, 3, 4, 5, 6, 8, 10].map(f => f * p).find(v => v >= max * (1 - 1e-9));
}
// One chart: categories on x, each series {name, values, color, line} as grouped bars or a line with markers.
function chart(id, title, cats, series) {
  const box = document.getElementById(id), W = box.clientWidth || 560, H = box.clientHeight || 260;
  const m = {l: 52, r: 10, t: 30, b: 40}, w = W - m.l - m.r, h = H - m.t - m.b;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  el(svg, 'text', {x: m.l, y: 18, class: 'title'}, title);
  const values = series.flatMap(s => s.values).filter(v => v !== null && Number.isFinite(v));
  const top = ceiling(Math.max(0, ...values)), y = v => m.t + h - h * v / top;
  for (let i = 0; i <= 4; i++) {
    const v = top * i / 4;
    el(svg, 'line', {x1: m.l, x2: m.l + w, y1: y(v), y2: y(v), class: 'grid-line'});
    el(svg, 'text', {x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end'}, Number(v.toPrecision(4)).toLocaleString('en-US'));
  }
  const step = w / Math.max(1, cats.length), bars = series.filter(s => !s.line);
  const every = Math.max(1, Math.ceil(cats.length * 60 / w));  // thin the labels when they would overlap
  cats.forEach((c, i) => {
    if (i % every === 0) el(svg, 'text', {x: m.l + step * (i + 0.5), y: m.t + h + 16, 'text-anchor': 'middle'}, c);
  });
  bars.forEach((s, j) => s.values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) return;
    const bw = step * 0.7 / bars.length, x = m.l + step * (i + 0.15) + j * bw;
    const r = el(svg, 'rect', {x: x, y: y(v), width: Math.max(1, bw), height: m.t + h - y(v), fill: s.color,
                               'data-value': v});
    el(r, 'title', {}, `${cats[i]}: ${Number(v.toPrecision(6)).toLocaleString('en-US')}`);
  }));
  series.filter(s => s.line).forEach(s => {
    const pts = s.values.map((v, i) => [m.l + step * (i + 0.5), y(v ?? 0)]);
    el(svg, 'polyline', {points: pts.map(p => p.join(',')).join(' '), fill: 'none', stroke: s.color,
                         'stroke-width': 2});
    pts.forEach((p, i) => {
      const dot = el(svg, 'circle', {cx: p[0], cy: p[1], r: 3, fill: s.color, 'data-value': s.values[i]});
      el(dot, 'title', {}, `${cats[i]}: ${s.values[i]}`);
    });
  });
  if (series.length > 1) series.forEach((s, j) => {
    el(svg, 'rect', {x: W - m.r - 150 + j * 75, y: 8, width: 10, height: 10, fill: s.color});
    el(svg, 'text', {x: W - m.r - 136 + j * 75, y: 17}, s.name);
  });
  box.replaceChildren(svg);
}
function healthRows(health) {
  document.querySelector('#health tbody').innerHTML = health.map(h => {
    const k = lag[h.consumer + '\\u0000' + h.topic] || {};
    return `<tr data-topic="${esc(h.topic)}"><td>${esc(h.consumer)}</td><td>${esc(h.topic)}</td>
      <td class="lag">${'lag' in k ? fmt(k.lag) : '...'}</td><td>${h.rows_per_second}</td>
      <td class="rows">${fmt(h.rows)}</td><td>${fmt(h.batches)}</td><td>${h.last_batch_at ?? 'n/a'}</td>
      <td class="dlq">${'dead_lettered' in k ? fmt(k.dead_lettered) : '...'}</td>
      <td class="quarantined">${fmt(h.quarantined)}</td></tr>`;
  }).join('');
}
let lastHealth = [];
async function refreshLag() {  // Kafka may be slow: never holds the metrics back
  try {
    const r = await fetch('/api/lag', {cache: 'no-store'});
    if (!r.ok) return;
    lag = Object.fromEntries((await r.json()).lag.map(k => [k.consumer + '\\u0000' + k.topic, k]));
    healthRows(lastHealth);
  } catch (e) { /* the cells keep their last values */ }
}
async function refresh() {
  refreshLag();
  try {
    const r = await fetch('/api/metrics', {cache: 'no-store'});
    const m = await r.json();
    if (!r.ok) { document.getElementById('error').textContent = ' - ' + m.error; return; }
    document.getElementById('error').textContent = '';
    const b = m.business, zones = b.zones.map(z => z.zone);
    kpi('kpi-units', b.units, fmt(b.units)); kpi('kpi-defects', b.defects, fmt(b.defects));
    kpi('kpi-fpy', b.first_pass_yield, pct(b.first_pass_yield)); kpi('kpi-events', b.events, fmt(b.events));
    chart('chart-units', 'Units per zone', zones, [{name: 'units', values: b.zones.map(z => z.units),
          color: '#3b7dd8'}]);
    chart('chart-defects', 'Defects per zone', zones, [{name: 'defects', values: b.zones.map(z => z.defects),
          color: '#d8553b'}]);
    chart('chart-fpy', 'First-pass yield per zone (%)', zones, [{name: 'yield', color: '#3bb07d',
          values: b.zones.map(z => z.first_pass_yield === null ? null : 100 * z.first_pass_yield)}]);
    chart('chart-days', 'Units and defects per day', b.days.map(d => d.day), [
          {name: 'units', values: b.days.map(d => d.units), color: '#3b7dd8', line: true},
          {name: 'defects', values: b.days.map(d => d.defects), color: '#d8553b'}]);
    lastHealth = m.health; healthRows(lastHealth);
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
