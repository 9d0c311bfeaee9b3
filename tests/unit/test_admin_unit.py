from __future__ import annotations

import pytest
from kafka.errors import TopicAlreadyExistsError

from framework.admin import KafkaAdmin
from framework.errors import KafkaUnavailableError, TopicError
from framework.settings import Settings


def _topic(name, partitions, replicas=(1,)):
    return {"name": name, "error_code": 0, "partitions": [
        {"partition_index": i, "leader_id": replicas[0], "replica_nodes": list(replicas), "isr_nodes": list(replicas)}
        for i in range(partitions)]}


@pytest.fixture
def client(mocker):
    c = mocker.MagicMock()
    c.describe_cluster.return_value = {"brokers": [{"broker_id": 1}]}
    c.describe_configs.return_value = {"topic": {}}
    return c


def test_create_uses_defaults_three_partitions_rf1(client):
    admin = KafkaAdmin(Settings.from_env({}), client=client)
    assert admin.create_topic("metrics") is True
    spec = client.create_topics.call_args.args[0]
    assert spec == {"metrics": {"num_partitions": 3, "replication_factor": 1, "configs": {}}}


def test_create_existing_same_partitions_is_not_an_error(client):
    client.create_topics.side_effect = TopicAlreadyExistsError()
    client.describe_topics.return_value = [_topic("metrics", 3)]
    assert KafkaAdmin(Settings.from_env({}), client=client).create_topic("metrics") is False


def test_create_existing_other_partitions_is_an_error(client):
    client.create_topics.side_effect = TopicAlreadyExistsError()
    client.describe_topics.return_value = [_topic("metrics", 3)]
    with pytest.raises(TopicError, match="already exists with 3 partitions, not the 6"):
        KafkaAdmin(Settings.from_env({}), client=client).create_topic("metrics", partitions=6)


def test_replication_factor_above_broker_count_is_refused_before_sending(client):
    with pytest.raises(TopicError, match="Replication factor 3 .* larger than the 1 broker"):
        KafkaAdmin(Settings.from_env({}), client=client).create_topic("metrics", replication_factor=3)
    client.create_topics.assert_not_called()


@pytest.mark.parametrize("name", ["", "a/b", "x" * 250, ".."])
def test_invalid_topic_names(client, name):
    with pytest.raises(TopicError, match="not valid"):
        KafkaAdmin(Settings.from_env({}), client=client).create_topic(name)


def test_describe_missing_topic_lists_existing(client):
    client.describe_topics.return_value = [{"name": "nope", "error_code": 3, "partitions": []}]
    client.list_topics.return_value = ["metrics", "__consumer_offsets"]
    with pytest.raises(TopicError, match="'nope' does not exist; existing topics: metrics."):
        KafkaAdmin(Settings.from_env({}), client=client).describe_topic("nope")


def test_unreachable_bootstrap_fails_fast():
    admin = KafkaAdmin(Settings.from_env({"PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}))
    with pytest.raises(KafkaUnavailableError, match="No Kafka broker accepts connections at 127.0.0.1:1"):
        admin.list_topics()


def test_default_replication_factor_follows_the_broker_count(client):
    client.describe_cluster.return_value = {"brokers": [{"broker_id": i} for i in (1, 2, 3, 4)]}
    KafkaAdmin(Settings.from_env({}), client=client).create_topic("replicated")
    assert client.create_topics.call_args.args[0]["replicated"]["replication_factor"] == 3
    KafkaAdmin(Settings.from_env({"PIPELINE_TOPIC_REPLICATION_FACTOR": "2"}), client=client).create_topic("two")
    assert client.create_topics.call_args.args[0]["two"]["replication_factor"] == 2


def test_describe_waits_out_metadata_lag_after_create(client):
    """Right after creation another broker may still say 'unknown topic' (seen on 3 brokers)."""
    unknown = {"name": "metrics.dlq", "error_code": 3, "partitions": []}
    client.describe_topics.side_effect = [[unknown], [unknown], [_topic("metrics.dlq", 1)]]
    client.list_topics.return_value = ["metrics", "metrics.dlq"]
    info = KafkaAdmin(Settings.from_env({}), client=client).describe_topic("metrics.dlq")
    assert info.partition_count == 1
    assert client.describe_topics.call_count == 3


def test_describe_waits_for_partition_leaders(client):
    leaderless = _topic("metrics", 3)
    leaderless["partitions"][1]["leader_id"] = -1
    client.describe_topics.side_effect = [[leaderless], [_topic("metrics", 3)]]
    info = KafkaAdmin(Settings.from_env({}), client=client).describe_topic("metrics")
    assert [p.leader for p in info.partitions] == [1, 1, 1]


def test_describe_of_a_missing_topic_does_not_wait(client):
    client.describe_topics.return_value = [{"name": "nope", "error_code": 3, "partitions": []}]
    client.list_topics.return_value = ["metrics"]
    with pytest.raises(TopicError, match="does not exist"):
        KafkaAdmin(Settings.from_env({}), client=client).describe_topic("nope")
    assert client.describe_topics.call_count == 1
