"""Beyond one machine, on one machine: a Spark standalone cluster and a 3-broker Kafka cluster.

- A Spark job built by framework.spark.build_spark_session runs its tasks on
  the executors of two standalone workers and reads a topic exactly.
- A 3-broker KRaft cluster with replication factor 3 and min.insync.replicas=2
  keeps every acknowledged record while a broker is SIGKILLed mid-production
  and brought back.

The Spark job runs in a subprocess (tests/integration/cluster_job.py): this
process may already hold the session's local SparkContext, and a process can
hold only one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framework.admin import KafkaAdmin
from framework.local.kafka_broker import free_port
from framework.local.processes import alive as _alive
from framework.local.kafka_cluster import LocalKafkaCluster
from framework.settings import Settings
from framework.local.spark_cluster import LocalSparkCluster

pytestmark = pytest.mark.integration

JOB = Path(__file__).with_name("cluster_job.py")
JOB_TIMEOUT = 180.0


def _run_job(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run the job in its own process group; on timeout the whole group (with Spark's JVM) is killed."""
    proc = subprocess.Popen([sys.executable, str(JOB), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"The cluster job did not finish within {timeout:.0f}s; stderr:\n{err[-3000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes, bytes]]:
    """Every record of ``topic`` up to the end offsets, as (partition, offset, key, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[int, int, bytes, bytes]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} back did not reach the end offsets {ends}"
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend((r.partition, r.offset, r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


@pytest.mark.timeout(300)
def test_spark_standalone_cluster_runs_the_job_on_its_workers_and_reads_kafka(kafka_broker, tmp_path):
    topic = "cluster-spark"
    with KafkaAdmin(Settings(), bootstrap_servers=kafka_broker.bootstrap_servers) as admin:
        admin.create_topic(topic, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    expected = {(f"k{i % 17}", f"record-{i}") for i in range(600)}
    for key, value in sorted(expected):
        producer.send(topic, key=key.encode(), value=value.encode())
    producer.flush()
    producer.close()

    with LocalSparkCluster(workers=2, cores_per_worker=1, memory="1g", work_dir=tmp_path / "spark") as cluster:
        pids = cluster.pids()
        assert set(pids) == {"master", "worker-1", "worker-2"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
        env.update(PIPELINE_SPARK_MASTER=cluster.master_url, PIPELINE_SPARK_DRIVER_HOST="127.0.0.1",
                   PIPELINE_KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap_servers,
                   PIPELINE_SPARK_EXECUTOR_MEMORY="512m", PIPELINE_SPARK_EXECUTOR_CORES="1",
                   PIPELINE_STATE_DIR=str(tmp_path / "state"), PIPELINE_OUTPUT_DIR=str(tmp_path / "output"))
        done = _run_job([topic, "2"], env, JOB_TIMEOUT)
        assert done.returncode == 0, f"cluster job failed:\n{done.stderr[-4000:]}"
        result = json.loads(done.stdout.strip().splitlines()[-1])

        assert result["master"] == cluster.master_url
        assert result["executors"] == 2, result["block_managers"]  # one executor on each worker
        assert result["executor_memory_status"] > 1  # block managers of the executors besides the driver's
        assert result["squares"] == sum(x * x for x in range(1000))  # Python code ran in the executors
        records = result["records"]
        assert len(records) == len(expected)
        assert {(key, value) for key, value, _, _ in records} == expected
        assert len({(p, o) for _, _, p, o in records}) == len(records)
        apps = {app["id"]: app for app in cluster.master_status()["completedapps"]}
        assert apps[result["app_id"]]["name"] == "cluster-job"
        assert apps[result["app_id"]]["cores"] == 2  # the master granted both workers' cores to the job
    for name, pid in pids.items():
        assert not _alive(pid), f"Spark {name} (pid {pid}) still runs after stop()"


@pytest.mark.timeout(300)
def test_three_broker_cluster_keeps_every_acknowledged_record_through_a_broker_crash(tmp_path):
    cluster = LocalKafkaCluster(state_dir=tmp_path / "kafka-cluster", ports=[free_port() for _ in range(3)],
                                controller_ports=[free_port() for _ in range(3)])
    topic = "replicated"
    acked: set[bytes] = set()
    failures: list[tuple[bytes, Exception]] = []
    producer = None

    def send(i: int) -> None:
        value = f"record-{i}".encode()
        future = producer.send(topic, key=str(i % 11).encode(), value=value)
        future.add_callback(lambda _md, v=value: acked.add(v))
        future.add_errback(lambda exc, v=value: failures.append((v, exc)))

    def describe():
        with KafkaAdmin(Settings(), bootstrap_servers=cluster.bootstrap_servers) as admin:
            return admin.describe_topic(topic)

    try:
        cluster.start()
        with KafkaAdmin(Settings(), bootstrap_servers=cluster.bootstrap_servers) as admin:
            assert admin.broker_count() == 3
            admin.create_topic(topic, partitions=3, replication_factor=3, configs={"min.insync.replicas": "2"})
        info = describe()
        assert info.replication_factor == 3 and info.configs.get("min.insync.replicas") == "2"
        assert all(len(p.isr) == 3 for p in info.partitions)

        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap_servers, acks="all", enable_idempotence=True,
                                 linger_ms=5, request_timeout_ms=15000, delivery_timeout_ms=90000)
        for i in range(2000):
            send(i)
        producer.flush(timeout=60)
        assert not failures and len(acked) == 2000

        victim = info.partitions[0].leader  # a leader, so at least one partition must fail over
        for i in range(2000, 4000):  # ~6 s of production, with the crash early in it
            send(i)
            if i == 2300:
                cluster.kill_node(victim)
            if i % 10 == 0:
                time.sleep(0.03)
        producer.flush(timeout=90)
        assert not failures, failures[:3]
        assert len(acked) == 4000  # acks=all kept succeeding with 2 of 3 replicas in sync
        during = describe()
        assert not cluster.status()["nodes"][victim - 1]["running"]
        assert all(victim not in p.isr and len(p.isr) == 2 and p.leader != victim for p in during.partitions)

        cluster.start_node(victim)
        deadline = time.monotonic() + 60
        while not all(len(p.isr) == 3 for p in describe().partitions):
            assert time.monotonic() < deadline, f"node {victim} did not rejoin the in-sync replicas"
            time.sleep(0.5)
        for i in range(4000, 4500):
            send(i)
        producer.flush(timeout=60)
        assert not failures and len(acked) == 4500

        records = _read_all(cluster.bootstrap_servers, topic, 3)
        values = [value for _, _, _, value in records]
        assert len(values) == 4500, f"read {len(values)} records, acknowledged 4500"
        assert set(values) == acked  # every acknowledged record exactly once, nothing else
    finally:
        if producer is not None:
            producer.close(timeout=5)
        cluster.stop()
    assert not any(node["running"] for node in cluster.status()["nodes"])
