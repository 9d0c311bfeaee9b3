"""Operations against the real broker and a real local Spark: Ctrl-C while Spark runs, root causes in one sentence.

- SIGINT while the main job consumes: exit 130 promptly, no traceback, nothing
  partial, and the next run completes exactly.
- records deleted before the consumer read them: one sentence naming topic,
  partitions, offsets and the remedies;
- an unreachable Spark master: one sentence naming its URL, within seconds;
- a table directory made immutable mid-run (``chattr +i``: root ignores file
  modes): one sentence naming the path, and the rerun after the fix is exact;
- ``PIPELINE_OUTPUT_DIR`` naming a regular file: one sentence from the
  consumer command and the main job.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from framework.admin import KafkaAdmin
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.errors import ConsumerError
from framework.local.kafka_broker import free_port
from framework.sinks import ParquetWriter
from tests.integration.pipeline_procs import assert_tables_hold_exactly, generate_data, pipeline_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "id INT NOT NULL, val DOUBLE"


def _command(script: str, *args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cmd" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _produce(settings, topic: str, partitions: int, start: int, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for partition in range(partitions):
        for i in range(start, start + count):
            producer.send(topic, value=json.dumps({"id": i, "val": i / 2}).encode(), partition=partition)
    producer.flush()
    producer.close()


@pytest.fixture
def consumer_class(settings):
    """A fresh topic (2 partitions) and a Parquet consumer of it; unregistered afterwards."""
    topic = f"ops-{uuid.uuid4().hex[:8]}"
    with KafkaAdmin(settings) as admin:
        admin.create_topic(topic, partitions=2)
    name = f"ops-consumer-{topic}"
    cls = type("OpsConsumer", (ConsumerSparkABC,), {"name": name, "topics": [topic], "schema": SCHEMA,
                                                    "writer": ParquetWriter()})
    yield cls
    CONSUMERS.unregister(name)


def _rows(path: Path) -> int:
    return pq.read_table(path, columns=["id"]).num_rows if path.is_dir() and any(path.rglob("*.parquet")) else 0


# ------------------------------------------------------------------ root causes, in process
def test_records_deleted_before_they_were_read_are_named_in_one_sentence(settings, spark, consumer_class):
    topic = consumer_class.topics[0]
    _produce(settings, topic, 2, 0, 100)
    consumer_class(settings, spark=spark).run(mode="bounded")          # offsets 0..99 of each partition read
    _produce(settings, topic, 2, 100, 200)
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.delete_records({TopicPartition(topic, p): 200 for p in range(2)})  # 100..199 gone unread
    finally:
        admin.close()
    consumer = consumer_class(settings, spark=spark)
    with pytest.raises(ConsumerError) as info:
        consumer.run(mode="bounded")
    message = str(info.value)
    assert message.startswith(f"Records that consumer {consumer.name!r} had not read yet were deleted from Kafka"), \
        message
    assert f"topic {topic!r} partitions 0, 1, offsets 100 to 199 of each;" in message, message
    assert "fail_on_data_loss = False" in message and str(consumer.checkpoint_path(topic)) in message, message
    assert "Python Proxy" not in message and "\n" not in message.split(" (full trace: ")[0]
    trace = Path(message.rsplit("(full trace: ", 1)[1].rstrip(")"))
    assert "OffsetOutOfRange" in trace.read_text() or "lost" in trace.read_text()


@pytest.mark.skipif(shutil.which("chattr") is None or os.geteuid() != 0, reason="needs chattr and root")
def test_a_table_directory_made_immutable_mid_run_is_one_sentence_and_the_rerun_is_exact(settings, spark,
                                                                                         consumer_class):
    topic = consumer_class.topics[0]
    _produce(settings, topic, 2, 0, 50)
    consumer_class(settings, spark=spark).run(mode="bounded")
    table = Path(settings.output_dir) / topic
    assert _rows(table) == 100
    _produce(settings, topic, 2, 50, 50)
    subprocess.run(["chattr", "+i", str(table)], check=True)
    try:
        with pytest.raises(ConsumerError) as info:
            consumer_class(settings, spark=spark).run(mode="bounded")
    finally:
        subprocess.run(["chattr", "-i", str(table)], check=True)
    message = str(info.value)
    staging = table.parent / "_staging" / table.name  # a batch is staged outside the table, then renamed in
    assert message.startswith((f"Cannot write {table}", f"Cannot write {staging}")), message
    assert "Operation not permitted" in message and "make the output directory writable" in message, message
    assert "Python Proxy" not in message and "Traceback" not in message
    consumer_class(settings, spark=spark).run(mode="bounded")        # after the fix: exact, no duplicate
    assert _rows(table) == 200


# ------------------------------------------------------------------ root causes, from the commands
def test_an_unreachable_spark_master_is_one_sentence_naming_it(kafka_broker, settings, tmp_path):
    topics = f"ops-m-{uuid.uuid4().hex[:6]},ops-w-{uuid.uuid4().hex[:6]}"
    with KafkaAdmin(settings) as admin:
        for topic in topics.split(","):
            admin.create_topic(topic, partitions=1)
    env = pipeline_env(kafka_bootstrap_servers=settings.bootstrap_servers, output_dir=tmp_path / "out",
                       state_dir=tmp_path / "state", spark_master="spark://127.0.0.1:1")
    env["CONSUMER_FIXTURE_TOPICS"] = topics
    started = time.monotonic()
    done = _command("consume_cmd.py", "fixture-parquet", "--bounded", "--module",
                    "tests.integration.consumer_fixtures", env=env)
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The Spark master spark://127.0.0.1:1 does not accept connections"), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) < 10, done.stderr


@pytest.mark.parametrize("script, args", [("consume_cmd.py", ["parquet", "--bounded"]), ("run_cmd.py", [])])
def test_an_output_dir_that_is_a_file_is_one_sentence(tmp_path, script, args):
    blocker = tmp_path / "output"
    blocker.write_text("not a directory")
    env = pipeline_env(output_dir=blocker, state_dir=tmp_path / "state", broker_port=free_port(),
                       broker_controller_port=free_port(), api_port=free_port())
    done = _command(script, *args, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip() == (f"error: PIPELINE_OUTPUT_DIR {blocker} cannot be a directory: {blocker} is a "
                                   "regular file; point PIPELINE_OUTPUT_DIR at a directory (it is created if "
                                   "missing).")
    assert not (tmp_path / "state" / "kafka").exists()  # nothing was started


# ------------------------------------------------------------------ Ctrl-C while Spark consumes
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.heavy
def test_ctrl_c_while_the_main_job_consumes_exits_130_and_the_rerun_is_exact(tmp_path):
    data = tmp_path / "data"
    source = generate_data(data)
    env = pipeline_env(data_dir=data, output_dir=tmp_path / "output", state_dir=tmp_path / "state",
                       broker_port=free_port(), broker_controller_port=free_port(), api_port=free_port(),
                       max_offsets_per_trigger=100)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cmd" / "run_cmd.py"), "--no-report"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 900  # a loaded machine takes minutes to start Spark
        consuming = False
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            consuming = consuming or "Stage 2/3" in line
            if consuming and " batch 0: " in line:   # a batch committed, dozens more to come
                break
        assert any(" batch 0: " in line for line in seen), "".join(seen)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)            # what a terminal's Ctrl-C does: the whole group
        signalled = time.monotonic()
        rest, _ = proc.communicate(timeout=300)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-4000:]
    assert took < 120, f"{took:.0f} s to stop"  # the running batch (at most 30 s of grace), Spark, broker
    assert "Traceback" not in rest and "reentrant call" not in rest and "Py4J" not in rest, rest[-4000:]
    assert "Stage 3/3" not in rest and "Pipeline summary" not in rest
    assert "stopped by SIGINT" in rest and "Stopped local Kafka broker" in rest, rest[-3000:]

    again = subprocess.run([sys.executable, str(ROOT / "cmd" / "run_cmd.py"), "--no-report"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_tables_hold_exactly(tmp_path / "output", source, "after an interrupted run and a rerun")


@pytest.mark.timeout(1200)
def test_ctrl_c_while_a_continuous_consumer_runs_exits_130_after_its_batch(kafka_broker, settings, tmp_path):
    topics = (f"ops-cm-{uuid.uuid4().hex[:6]}", f"ops-cw-{uuid.uuid4().hex[:6]}")
    with KafkaAdmin(settings) as admin:
        for topic in topics:
            admin.create_topic(topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for i in range(300):
        producer.send(topics[0], json.dumps({"id": i, "time": "2026-01-05T08:00:00Z", "val": 1.0}).encode())
    producer.flush()
    producer.close()
    env = pipeline_env(kafka_bootstrap_servers=settings.bootstrap_servers, output_dir=tmp_path / "out",
                       state_dir=tmp_path / "state", max_offsets_per_trigger=100, trigger_seconds=1)
    env["CONSUMER_FIXTURE_TOPICS"] = ",".join(topics)
    proc = subprocess.Popen([sys.executable, str(ROOT / "cmd" / "consume_cmd.py"), "fixture-parquet", "--module",
                             "tests.integration.consumer_fixtures"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if f"{topics[0]} batch 0: " in line:
                break
        assert any(" batch 0: " in line for line in seen), "".join(seen)[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, ("".join(seen) + rest)[-4000:]
    assert "Traceback" not in rest and "reentrant call" not in rest, rest[-4000:]
    assert "stopped by SIGINT" in rest and "fixture-parquet" in rest, rest[-3000:]
    rows = _rows(tmp_path / "out" / topics[0])
    assert rows % 100 == 0 and rows >= 100  # whole batches only: nothing partial
