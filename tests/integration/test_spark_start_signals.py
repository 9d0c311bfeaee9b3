"""Ctrl-C while Spark is still starting: the command's handler gets it, the command stops and exits 130.

pyspark installs its own SIGINT handler when a SparkContext starts in the main thread;
:func:`framework.spark.build_spark_session` starts it from a helper thread so that the
command's handler stays in charge throughout. The signal is real, sent to the process at a
pinned moment of the start (``tests/integration/spark_start_signal.py``): as the SparkContext
begins, and after the SparkContext started, while the SparkSession is created (the moment
pyspark's own handler used to turn Ctrl-C into a traceback).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from framework.admin import KafkaAdmin
from tests.integration.pipeline_procs import pipeline_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

START = """
import signal, sys
import tests.integration.spark_start_signal
from framework.log import configure_logging
from framework.settings import Settings
from framework.signals import StopSignals
from framework.spark import build_spark_session
from pyspark.sql import SparkSession

configure_logging("INFO")
stops = []
with StopSignals(lambda: stops.append(1), "the test", "after the start") as signals:
    spark = build_spark_session(Settings.from_env(), app_name="start-signal", kafka_connector=False)
    ours = signal.getsignal(signal.SIGINT) == signals.handle
    print(f"received={signals.received} stops={len(stops)} ours={ours} "
          f"active={SparkSession.getActiveSession() is spark} rows={spark.range(3).count()}", flush=True)
    spark.stop()
sys.exit(signals.exit_code)
"""


@pytest.mark.parametrize("when", [pytest.param("context", marks=pytest.mark.heavy), "session"])
def test_a_sigint_during_the_spark_start_reaches_the_commands_handler(when, tmp_path):
    env = pipeline_env(state_dir=tmp_path / "state", spark_master="local[1]")
    env["SIGNAL_DURING_SPARK_START"] = when
    done = subprocess.run([sys.executable, "-c", START], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 130, done.stdout + done.stderr[-3000:]
    assert f"sending SIGINT during the Spark start ({when})" in done.stdout
    # honoured once, by our handler, which is still installed; the session works in the main thread
    assert "received=SIGINT stops=1 ours=True active=True rows=3" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr[-3000:]


def test_ctrl_c_while_the_consumer_starts_spark_stops_before_any_batch_and_exits_130(kafka_broker, settings,
                                                                                     tmp_path):
    topics = (f"start-m-{uuid.uuid4().hex[:6]}", f"start-w-{uuid.uuid4().hex[:6]}")
    with KafkaAdmin(settings) as admin:
        for topic in topics:
            admin.create_topic(topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for i in range(50):
        producer.send(topics[0], json.dumps({"id": i, "time": "2026-01-05T08:00:00Z", "val": 1.0}).encode())
    producer.flush()
    producer.close()
    env = pipeline_env(kafka_bootstrap_servers=settings.bootstrap_servers, output_dir=tmp_path / "out",
                       state_dir=tmp_path / "state")
    env.update(CONSUMER_FIXTURE_TOPICS=",".join(topics), SIGNAL_DURING_SPARK_START="session")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "cmd" / "consume_cmd.py"), "fixture-parquet", "--bounded",
                           "--module", "tests.integration.consumer_fixtures",
                           "--module", "tests.integration.spark_start_signal"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 130, output[-4000:]
    assert "sending SIGINT during the Spark start (session)" in done.stdout, output[-3000:]
    assert "Traceback" not in done.stderr and "reentrant call" not in done.stderr, done.stderr[-4000:]
    assert done.stderr.strip().splitlines()[-1].startswith("stopped by SIGINT: "), done.stderr[-3000:]
    assert "started 0 quer" not in output and " batch 0: " not in output  # no query ran, nothing written
    assert not (tmp_path / "out" / topics[0]).exists()
    assert time.monotonic() - started < 240
