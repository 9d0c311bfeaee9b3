"""Consumers for the integration tests, loaded by ``cmd/consume_cmd.py --module tests.integration.consumer_fixtures``.

Environment (read when the module is imported):

- ``CONSUMER_FIXTURE_TOPICS``: the two topics, ``metrics-like,workorder-like``.
- ``CONSUMER_FIXTURE_PAUSE``: seconds the writer sleeps after publishing each
  batch, before Spark may commit it, so a test can SIGKILL the process exactly
  between "published" and "committed" (the case a replay must overwrite).
"""
from __future__ import annotations

import os
import time

from apps.consumers import METRICS_SCHEMA, WORKORDER_SCHEMA
from framework.consumer.base import ConsumerSparkABC
from framework.sinks import ParquetWriter

TOPICS = os.environ.get("CONSUMER_FIXTURE_TOPICS", "fixture-metrics,fixture-workorder").split(",")


class PausingParquetWriter(ParquetWriter):
    """A ParquetWriter that sleeps ``CONSUMER_FIXTURE_PAUSE`` seconds after each published batch."""

    def write_batch(self, df, batch_id, topic):
        super().write_batch(df, batch_id, topic)
        pause = float(os.environ.get("CONSUMER_FIXTURE_PAUSE", "0") or 0)
        if pause:
            time.sleep(pause)


class FixtureParquetConsumer(ConsumerSparkABC):
    name = "fixture-parquet"
    topics = TOPICS
    schema = {TOPICS[0]: METRICS_SCHEMA, TOPICS[1]: WORKORDER_SCHEMA}
    writer = PausingParquetWriter()
