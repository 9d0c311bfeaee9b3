"""A JDBC consumer for the kill tests, loaded by ``cmd/consume_cmd.py --module tests.integration.jdbc_fixtures``.

Environment (read when the module is imported):

- ``JDBC_FIXTURE_TOPIC``, ``JDBC_FIXTURE_TABLE``: what is consumed and where it goes
  (aggregates in ``<table>_per_zone`` and ``<table>_per_day``).
- ``JDBC_FIXTURE_PAUSE_AT``: ``staged:N`` (batch N staged, its transaction not yet
  committed) or ``applied:N`` (batch N committed in PostgreSQL, not yet in Spark's
  checkpoint): the writer writes ``<JDBC_FIXTURE_MARKERS>/<point>-<N>`` and sleeps,
  so a test can SIGKILL the consumer at exactly that point.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from framework.consumer.base import ConsumerSparkABC
from framework.sinks.aggregates import Aggregation, count, max_, sum_
from framework.sinks.jdbc import PostgresWriter

TOPIC = os.environ.get("JDBC_FIXTURE_TOPIC", "jdbc-fixture")
TABLE = os.environ.get("JDBC_FIXTURE_TABLE", "jdbc_fixture")
SCHEMA = "id BIGINT NOT NULL, zone STRING NOT NULL, qty INT, time TIMESTAMP NOT NULL"


def _pause(point: str, batch_id: int) -> None:
    if os.environ.get("JDBC_FIXTURE_PAUSE_AT") == f"{point}:{batch_id}":
        marker = Path(os.environ["JDBC_FIXTURE_MARKERS"]) / f"{point}-{batch_id}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        time.sleep(600)


class PausingPostgresWriter(PostgresWriter):
    """A PostgresWriter that can stop for a SIGKILL before or after its commit."""

    def write_batch(self, df, batch_id, topic):
        self._batch_id = batch_id
        super().write_batch(df, batch_id, topic)
        _pause("applied", batch_id)

    def _stage(self, df, staging):
        super()._stage(df, staging)
        if not staging.endswith("_quarantine_" + TOPIC.replace("-", "_")):
            _pause("staged", getattr(self, "_batch_id", -1))


class JdbcFixtureConsumer(ConsumerSparkABC):
    name = "jdbc-fixture"
    topics = [TOPIC]
    schema = SCHEMA
    writer = PausingPostgresWriter(TABLE, aggregations=[
        Aggregation(f"{TABLE}_per_zone", ["zone"], {"n": count(), "qty": sum_("qty"), "last": max_("time")}),
        Aggregation(f"{TABLE}_per_day", {"day": "to_date(time)"}, {"n": count()}),
    ])
