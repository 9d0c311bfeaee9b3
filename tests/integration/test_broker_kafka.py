"""The local broker is a real Apache Kafka: topics, messages, restarts, no auto-creation."""
from __future__ import annotations

import os
import signal

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framework.admin import KafkaAdmin
from framework.errors import TopicError
from framework.local.kafka_broker import LocalKafkaBroker, free_port
from framework.settings import Settings

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, int, bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    out = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=2000).values():
            out.extend((r.partition, r.offset, r.key, r.value) for r in records)
    consumer.close()
    return sorted(out)


def test_admin_create_describe_list_delete(settings):
    with KafkaAdmin(settings) as admin:
        assert admin.create_topic("adm-a") is True
        assert admin.create_topic("adm-a") is False
        admin.create_topic("adm-b", partitions=2, configs={"retention.ms": "3600000"})
        assert {"adm-a", "adm-b"} <= set(admin.list_topics())
        assert "__consumer_offsets" not in admin.list_topics()
        info = admin.describe_topic("adm-b")
        assert info.partition_count == 2 and info.replication_factor == 1
        assert info.configs.get("retention.ms") == "3600000"
        with pytest.raises(TopicError, match="larger than the 1 broker"):
            admin.create_topic("adm-c", replication_factor=2)
        with pytest.raises(TopicError, match="already exists with 3 partitions"):
            admin.create_topic("adm-a", partitions=5)
        assert admin.delete_topic("adm-b") is True
        assert admin.delete_topic("adm-b") is False


def test_topics_are_never_auto_created(settings):
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, max_block_ms=3000)
    try:
        with pytest.raises(Exception):  # noqa: B017 - kafka-python's timeout or unknown-topic error
            producer.send("never-created", b"x").get(timeout=10)
    finally:
        producer.close(timeout=2)
    with KafkaAdmin(settings) as admin:
        assert "never-created" not in admin.list_topics()


def test_restart_keeps_topics_and_acknowledged_messages(tmp_path):
    settings = Settings.from_env().replace(state_dir=tmp_path, broker_port=free_port(),
                                           broker_controller_port=free_port())
    broker = LocalKafkaBroker.from_settings(settings)
    broker.start()
    try:
        pid = broker.running_pid()
        assert pid and broker.status()["running"]
        with KafkaAdmin(settings) as admin:
            admin.create_topic("durable", partitions=3)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        for i in range(300):
            producer.send("durable", key=str(i % 7).encode(), value=f"m{i}".encode())
        producer.flush()
        producer.close()
        before = _read_all(broker.bootstrap_servers, "durable", 3)
        assert len(before) == 300

        assert broker.stop() is True
        assert broker.running_pid() is None and not broker.pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

        broker.start()
        with KafkaAdmin(settings) as admin:
            assert "durable" in admin.list_topics()
            assert sum(admin.end_offsets("durable").values()) == 300
        assert _read_all(broker.bootstrap_servers, "durable", 3) == before
        assert broker.log_file.is_file() and "Kafka Server started" in broker.log_file.read_text()
    finally:
        broker.stop()


def test_killed_broker_is_detected_and_restartable(tmp_path):
    settings = Settings.from_env().replace(state_dir=tmp_path, broker_port=free_port(),
                                           broker_controller_port=free_port())
    broker = LocalKafkaBroker.from_settings(settings)
    broker.start()
    try:
        os.kill(broker.running_pid(), signal.SIGKILL)
        import time
        deadline = time.monotonic() + 10
        while broker.running_pid() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert broker.running_pid() is None
        broker.start()
        assert broker.running_pid()
    finally:
        broker.stop()
