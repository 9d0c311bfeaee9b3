"""The production-line demo: a simulated stream served by the API, a producer, and a PostgreSQL consumer.

- ``GET /stream_data_production_line?from=N&limit=M&delay=S`` (added to the
  streaming API by :func:`register`): the events of
  :class:`~framework.sources.production_line.ProductionLine` in the API's wire
  format (``"_position": N`` first, one JSON object a line), paced at the
  line's ``rate`` unless ``delay`` is given; it ends after ``records`` events.
- :class:`ProductionLineProducer`: the stream into topic ``production_line``,
  keyed by zone (a defect follows its unit in the same partition).
- :class:`ProductionLineConsumer`: raw events appended to ``production_events``,
  and four aggregates upserted exactly once in the same transaction:
  ``units_per_zone``, ``defects_per_zone``, ``units_per_day`` (units and defects
  per simulated day) -- first-pass yield per zone is ``1 - defects / units``
  (:data:`FIRST_PASS_YIELD_SQL`).
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import orjson
from flask import Flask, Response, current_app, jsonify, request

from apps.replay import StreamAborted
from framework.consumer.base import ConsumerSparkABC
from framework.producer.base import ProducerABC
from framework.sinks.aggregates import Aggregation, count, max_, sum_
from framework.sinks.jdbc import PostgresWriter
from framework.sources.production_line import ProductionLine

STREAM = "production_line"
ENDPOINT = f"/stream_data_{STREAM}"
TOPIC = "production_line"
EVENTS_TABLE = "production_events"
EXTENSION = "production_line"
CHUNK = 500  # events per chunk when unpaced

SCHEMA = ("kind STRING NOT NULL, unit_id STRING NOT NULL, zone STRING NOT NULL, point STRING NOT NULL, "
          "defect STRING, time TIMESTAMP NOT NULL")

#: first-pass yield per zone (share of units without a defect), from the two upserted aggregates
FIRST_PASS_YIELD_SQL = (
    "SELECT u.zone, u.units, COALESCE(d.defects, 0) AS defects, "
    "1 - COALESCE(d.defects, 0)::double precision / NULLIF(u.units, 0) AS first_pass_yield "
    "FROM units_per_zone u LEFT JOIN defects_per_zone d ON d.zone = u.zone ORDER BY u.zone")

AGGREGATIONS = (
    Aggregation("units_per_zone", ["zone"], {"units": count(), "last_unit_at": max_("time")}, where="kind = 'unit'"),
    Aggregation("defects_per_zone", ["zone"], {"defects": count()}, where="kind = 'defect'"),
    Aggregation("units_per_day", {"day": "to_date(time)"},
                {"units": sum_("CASE WHEN kind = 'unit' THEN 1 ELSE 0 END"),
                 "defects": sum_("CASE WHEN kind = 'defect' THEN 1 ELSE 0 END")}),
)


# ------------------------------------------------------------------ the API endpoint
def register(app: Flask, line: ProductionLine) -> Flask:
    """Serve ``line`` at :data:`ENDPOINT` on an API app (see :func:`apps.api.create_app`)."""
    app.extensions[EXTENSION] = line
    app.add_url_rule(ENDPOINT, "production_line", _stream)
    return app


def _stream() -> Response:
    line: ProductionLine = current_app.extensions[EXTENSION]
    try:
        start = int(request.args.get("from", 0))
        limit = request.args.get("limit")
        delay = float(request.args.get("delay", 1.0 / line.rate))
        if start < 0 or delay < 0 or (limit is not None and int(limit) < 0):
            raise ValueError
    except ValueError:
        return _bad(f"Malformed parameters {dict(request.args)}; "
                    "expected from=N (N >= 0), limit=N, delay=seconds >= 0.")
    stop = line.records
    if limit is not None:
        stop = start + int(limit) if stop is None else min(stop, start + int(limit))
    if line.records is not None and start > line.records:
        return _bad(f"from={start} is beyond the end of stream {STREAM!r}, which has {line.records} records.")
    replay = current_app.extensions.get("replay")
    stopping = replay.stopping if replay is not None else None
    headers = {"Cache-Control": "no-cache", "X-Stream-From": str(start)}
    if line.records is not None:
        headers["X-Stream-Records"] = str(line.records)
    return Response(_lines(line, start, stop, delay, stopping), mimetype="application/x-ndjson", headers=headers)


def _bad(message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = 400
    return response


def _lines(line: ProductionLine, start: int, stop: int | None, delay: float, stopping: Any) -> Iterator[bytes]:
    chunk: list[bytes] = []
    next_at = time.monotonic()
    for position, event in line.events(start, stop):
        chunk.append(orjson.dumps({"_position": position, **event}) + b"\n")
        if delay > 0 or len(chunk) >= CHUNK:
            yield b"".join(chunk)
            chunk.clear()
        if stopping is not None and stopping.is_set():
            raise StreamAborted("the API is stopping")
        if delay > 0:
            next_at += delay
            wait = next_at - time.monotonic()
            if wait > 0 and stopping is not None and stopping.wait(wait):
                raise StreamAborted("the API is stopping")
            elif wait > 0 and stopping is None:
                time.sleep(wait)
    if chunk:
        yield b"".join(chunk)


# ------------------------------------------------------------------ producer and consumer
class ProductionLineProducer(ProducerABC):
    """The simulated production line into topic ``production_line``, keyed by zone."""

    name = "production-line"
    endpoint = ENDPOINT
    topic = TOPIC
    key_field = "zone"


class ProductionLineConsumer(ConsumerSparkABC):
    """Raw events appended to ``production_events``; units/defects per zone and per day upserted, exactly once."""

    name = "production-line"
    topics = [TOPIC]
    schema = SCHEMA
    writer = PostgresWriter(EVENTS_TABLE, aggregations=AGGREGATIONS)
