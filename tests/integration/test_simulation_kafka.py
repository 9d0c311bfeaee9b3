"""Simulation producers against the real broker: exactly once from local Spark, from a 2-worker standalone
cluster, and across a SIGKILL of the local producer (``cmd/produce_cmd.py NAME [--spark] --module ...``)."""
from __future__ import annotations

import collections

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from framework.local.spark_cluster import LocalSparkCluster
from framework.producer.resume import POSITION_HEADER, header
from tests.integration.pipeline_procs import Proc, pipeline_env, topic_counts, wait_until
from tests.integration.sim_models import FixedModel, expected_count

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODULE = "tests.integration.sim_models"


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, int, dict]]:
    """Every record of ``topic`` as (partition, position, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                out += [(tp.partition, int(header(r.headers, POSITION_HEADER)), orjson.loads(r.value))
                        for r in records]
        return out
    finally:
        consumer.close()


def assert_exactly_the_model(bootstrap: str, topic: str, runs: int, partitions: int) -> None:
    records = read_topic(bootstrap, topic)
    expected = list(FixedModel(runs=runs).simulate_all())
    assert len(records) == len(expected) == expected_count(runs)
    duplicates = [p for p, n in collections.Counter(p for _, p, _ in records).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} positions twice, e.g. {duplicates[:3]}"
    assert sorted((p, v) for _, p, v in records) == [(p, m.value) for p, m in expected]
    for partition, _, value in records:
        assert partition == (value["run"] - 1) % partitions
    assert topic_counts(bootstrap, [f"{topic}.dlq"]) == {f"{topic}.dlq": 0}


def produce(tmp_path, kafka_broker, name: str, *args: str, **settings) -> Proc:
    env = pipeline_env(kafka_bootstrap_servers=kafka_broker.bootstrap_servers, **settings)
    return Proc(name, "produce_cmd.py", [name, "--module", MODULE, *args], env, tmp_path / f"{name}.log")


@pytest.mark.timeout(400)
def test_local_spark_publishes_every_message_exactly_once_and_a_rerun_adds_nothing(kafka_broker, tmp_path):
    proc = produce(tmp_path, kafka_broker, "it-sim-spark-local", "--spark", "--runs", "5")
    assert proc.wait(300) == 0, proc.tail()
    assert f"{expected_count(5)} sent to it-sim-spark-local" in proc.text(), proc.tail()
    assert "3 tasks" in proc.text()
    assert_exactly_the_model(kafka_broker.bootstrap_servers, "it-sim-spark-local", runs=5, partitions=3)
    again = produce(tmp_path, kafka_broker, "it-sim-spark-local", "--spark", "--runs", "5")
    assert again.wait(300) == 0, again.tail()
    assert " 0 sent to it-sim-spark-local" in again.text(), again.tail()
    assert_exactly_the_model(kafka_broker.bootstrap_servers, "it-sim-spark-local", runs=5, partitions=3)


@pytest.mark.timeout(500)
@pytest.mark.heavy
def test_a_two_worker_standalone_cluster_publishes_every_message_exactly_once(kafka_broker, tmp_path):
    with LocalSparkCluster(workers=2, cores_per_worker=1, memory="1g", work_dir=tmp_path / "spark") as cluster:
        proc = produce(tmp_path, kafka_broker, "it-sim-spark-cluster", "--spark", "--runs", "4",
                       spark_master=cluster.master_url, spark_driver_host="127.0.0.1",
                       spark_executor_memory="512m", spark_executor_cores=1)
        assert proc.wait(400) == 0, proc.tail()
        status = cluster.master_status()
        apps = [a for a in status.get("completedapps", []) + status.get("activeapps", [])
                if a.get("name") == "produce-it-sim-spark-cluster"]
        assert len(apps) == 1 and apps[0]["cores"] == 2, status
        for worker in ("worker-1", "worker-2"):  # each worker ran an executor of the application
            assert list((tmp_path / "spark" / worker / apps[0]["id"]).glob("*/stderr")), worker
    assert f"{expected_count(4)} sent to it-sim-spark-cluster" in proc.text(), proc.tail()
    assert_exactly_the_model(kafka_broker.bootstrap_servers, "it-sim-spark-cluster", runs=4, partitions=2)


@pytest.mark.timeout(300)
def test_sigkill_of_the_local_producer_and_a_restart_give_exact_counts(kafka_broker, tmp_path):
    bootstrap = kafka_broker.bootstrap_servers
    proc = produce(tmp_path, kafka_broker, "it-sim-killed", "--runs", "3", "--delay", "0.01")
    try:
        wait_until(lambda: sum(topic_counts(bootstrap, ["it-sim-killed"]).values()) > 500, 120,
                   "the first messages", [proc])
        proc.kill()
    finally:
        proc.cleanup()
    partial = sum(topic_counts(bootstrap, ["it-sim-killed"]).values())
    assert 0 < partial < expected_count(3)
    again = produce(tmp_path, kafka_broker, "it-sim-killed", "--runs", "3")
    assert again.wait(200) == 0, again.tail()
    assert_exactly_the_model(bootstrap, "it-sim-killed", runs=3, partitions=3)
