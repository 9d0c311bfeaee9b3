"""The Iceberg consumer of the kill tests, loaded by ``cmd/consume_cmd.py --module tests.integration.iceberg_fixtures``.

Environment (read when the module is imported or a batch is written):

- ``ICEBERG_FIXTURE_TOPIC``: the topic (metrics records).
- ``ICEBERG_FIXTURE_PAUSE_DIR``: when set, the writer creates ``<dir>/batch-<id>`` and sleeps 60 s
  before writing each batch from ``ICEBERG_FIXTURE_PAUSE_FROM`` (default 0) on, so a test can SIGKILL the
  process inside a batch, before Iceberg's commit.
- ``FRAMEWORK_TEST_KILL_AFTER_ICEBERG_COMMIT``: see :mod:`framework.sinks.iceberg`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from apps.consumers import METRICS_SCHEMA
from framework.consumer.base import ConsumerSparkABC
from framework.sinks.iceberg import IcebergWriter


class PausingIcebergWriter(IcebergWriter):
    def write_batch(self, df, batch_id, topic):
        pause_dir = os.environ.get("ICEBERG_FIXTURE_PAUSE_DIR")
        if pause_dir and batch_id >= int(os.environ.get("ICEBERG_FIXTURE_PAUSE_FROM", "0")):
            Path(pause_dir, f"batch-{batch_id}").touch()
            time.sleep(60)
        super().write_batch(df, batch_id, topic)


class FixtureIcebergConsumer(ConsumerSparkABC):
    name = "fixture-iceberg"
    topics = [os.environ.get("ICEBERG_FIXTURE_TOPIC", "fixture-metrics")]
    schema = METRICS_SCHEMA
    writer = PausingIcebergWriter()
