"""The local Kafka cluster and Spark standalone harness, without starting a JVM."""
from __future__ import annotations

import signal
import subprocess
import time

import pytest

from framework.commands.broker import main as broker_main
from framework.errors import BrokerError, FrameworkError, SettingsError
from framework.local.kafka_broker import LocalKafkaBroker, _alive
from framework.local.kafka_cluster import LocalKafkaCluster, local_kafka, replication_properties
from framework.settings import Settings
from framework.spark import spark_conf
from framework.local.spark_cluster import LocalSparkCluster, _stop_group, spark_home


def _props(node: LocalKafkaBroker) -> dict[str, str]:
    node._write_config()
    return dict(line.split("=", 1) for line in node.config_file.read_text().splitlines())


def test_three_nodes_share_one_static_quorum_on_loopback(tmp_path):
    cluster = LocalKafkaCluster(state_dir=tmp_path, ports=[19092, 19094, 19096],
                                controller_ports=[19093, 19095, 19097])
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    for node_id, (port, cport) in enumerate([(19092, 19093), (19094, 19095), (19096, 19097)], start=1):
        props = _props(cluster.node(node_id))
        assert props["node.id"] == str(node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"
        assert props["log.dirs"] == str((tmp_path / f"node-{node_id}" / "data").resolve())
        assert props["auto.create.topics.enable"] == "false"
        assert props["default.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["transaction.state.log.min.isr"] == "2"


def test_nothing_is_written_before_start(tmp_path):
    LocalKafkaCluster(state_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_cluster_id_is_created_once_and_kept(tmp_path):
    cluster = LocalKafkaCluster(state_dir=tmp_path)
    first = cluster._cluster_id()
    assert len(first) == 22 and cluster.cluster_id_file.read_text().strip() == first
    assert LocalKafkaCluster(state_dir=tmp_path)._cluster_id() == first
    assert cluster.status()["cluster_id"] == first


@pytest.mark.parametrize("nodes, rf, isr", [(1, "1", "1"), (2, "2", "1"), (3, "3", "2"), (5, "3", "2")])
def test_replication_defaults_follow_the_node_count(nodes, rf, isr):
    props = replication_properties(nodes)
    assert props["default.replication.factor"] == rf and props["min.insync.replicas"] == isr


def test_from_settings_derives_ports_and_bootstrap_servers(tmp_path):
    s = Settings.from_env({"PIPELINE_BROKER_COUNT": "3"}, state_dir=tmp_path)
    cluster = LocalKafkaCluster.from_settings(s)
    assert cluster.ports == (9092, 9094, 9096) and cluster.controller_ports == (9093, 9095, 9097)
    assert cluster.state_dir == tmp_path / "kafka-cluster"
    assert s.bootstrap_servers == cluster.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert isinstance(local_kafka(s), LocalKafkaCluster)
    single = Settings.from_env({}, state_dir=tmp_path)
    assert single.bootstrap_servers == "127.0.0.1:9092"
    assert isinstance(local_kafka(single), LocalKafkaBroker)


def test_overlapping_ports_are_refused_with_the_fix(tmp_path):
    s = Settings.from_env({"PIPELINE_BROKER_COUNT": "3", "PIPELINE_BROKER_CONTROLLER_PORT": "9094"})
    with pytest.raises(BrokerError, match="must be distinct.*2\\*PIPELINE_BROKER_COUNT apart"):
        LocalKafkaCluster.from_settings(s)
    with pytest.raises(BrokerError, match="one client and one controller port per node"):
        LocalKafkaCluster(state_dir=tmp_path, ports=[1, 2], controller_ports=[3])


def test_broker_count_is_checked():
    for bad in ("0", "10"):
        with pytest.raises(SettingsError, match=f"PIPELINE_BROKER_COUNT={bad} is not valid"):
            Settings.from_env({"PIPELINE_BROKER_COUNT": bad})


def test_unknown_node_names_the_valid_ids(tmp_path):
    cluster = LocalKafkaCluster(state_dir=tmp_path)
    with pytest.raises(BrokerError, match="No node 4 .* node ids are 1, 2, 3"):
        cluster.kill_node(4)
    with pytest.raises(BrokerError, match="No node 0"):
        cluster.start_node(0)


def test_status_of_a_stopped_cluster(tmp_path):
    st = LocalKafkaCluster(state_dir=tmp_path).status()
    assert st["running"] is False and [n["node_id"] for n in st["nodes"]] == [1, 2, 3]
    assert not any(n["running"] for n in st["nodes"])


def test_broker_command_manages_a_cluster_when_count_is_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPELINE_BROKER_COUNT", "3")
    monkeypatch.setenv("PIPELINE_STATE_DIR", str(tmp_path))
    assert broker_main(["status", "--log-level", "ERROR"]) == 3
    out = capsys.readouterr().out
    assert "0 of 3 brokers up at 127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096" in out
    assert broker_main(["stop", "--log-level", "ERROR"]) == 0
    assert "no local Kafka cluster node was running" in capsys.readouterr().out


def test_single_broker_keeps_its_own_quorum_and_takes_extra_properties(tmp_path):
    broker = LocalKafkaBroker(state_dir=tmp_path, port=19000, controller_port=19001,
                              extra_properties={"num.partitions": "6"})
    props = _props(broker)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19001"
    assert props["num.partitions"] == "6" and props["default.replication.factor"] == "1"
    with pytest.raises(BrokerError, match="call start\\(\\) first"):
        broker.wait_ready()


def test_driver_host_setting_applies_to_cluster_masters_only():
    base = Settings.from_env({})
    remote = base.replace(spark_master="spark://spark-master:7077", spark_driver_host="consumer")
    assert spark_conf(remote, kafka_connector=False)["spark.driver.host"] == "consumer"
    assert "spark.driver.host" not in spark_conf(base.replace(spark_master="spark://spark-master:7077"),
                                                 kafka_connector=False)
    local = spark_conf(base.replace(spark_driver_host="consumer"), kafka_connector=False)
    assert local["spark.driver.host"] == local["spark.driver.bindAddress"] == "127.0.0.1"


def test_the_connector_jars_go_to_spark_only_when_asked(monkeypatch, tmp_path):
    jars = [tmp_path / "spark-sql-kafka.jar", tmp_path / "kafka-clients.jar"]
    monkeypatch.setattr("framework.spark.kafka_connector_jars", lambda cache: jars)
    monkeypatch.setattr("framework.spark.iceberg_jars", lambda settings: [])  # the connector is the point here
    monkeypatch.setattr("framework.spark.jdbc_driver_jars", lambda cache: [])
    base = Settings.from_env({})
    assert spark_conf(base)["spark.jars"] == f"{jars[0]},{jars[1]}"
    assert "spark.jars" not in spark_conf(base, kafka_connector=False)


def test_spark_cluster_is_lazy_and_checks_its_shape():
    cluster = LocalSparkCluster()
    with pytest.raises(FrameworkError, match="not been started"):
        _ = cluster.master_url
    assert cluster.status()["running"] is False and cluster.pids() == {}
    with pytest.raises(FrameworkError, match="at least 1 worker"):
        LocalSparkCluster(workers=0)
    assert (spark_home() / "bin" / "spark-class").is_file()


def test_stop_group_ends_the_leader_and_its_children():
    # A stand-in for a worker and the executor it launched: a shell and a child in one new session.
    leader = subprocess.Popen(["bash", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    child = int(leader.stdout.readline())
    t0 = time.monotonic()
    _stop_group(leader, timeout=5)
    assert leader.returncode is not None
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:  # a zombie waiting for its new parent counts as gone
        time.sleep(0.05)
    assert not _alive(child)
    assert time.monotonic() - t0 < 6


def test_stop_group_kills_a_leader_that_ignores_sigterm():
    leader = subprocess.Popen(["bash", "-c", "trap '' TERM; while :; do sleep 0.1; done"], start_new_session=True)
    time.sleep(0.3)  # let the trap be installed
    _stop_group(leader, timeout=1)
    assert leader.returncode == -signal.SIGKILL
