from __future__ import annotations

import json
import subprocess
import sys

import pytest

from framework.errors import BrokerError, JavaNotFoundError
from framework.local.jars import _ivy_module, java_executable
from framework.local.kafka_broker import LocalKafkaBroker, _cluster_id, free_port
from framework.settings import Settings


def test_config_is_kraft_combined_on_loopback_without_auto_create(tmp_path):
    broker = LocalKafkaBroker(state_dir=tmp_path, port=19000, controller_port=19001)
    broker._write_config()
    props = dict(line.split("=", 1) for line in broker.config_file.read_text().splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19000,CONTROLLER://127.0.0.1:19001"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19001"
    assert props["log.dirs"] == str((tmp_path / "data").resolve())


def test_from_settings_uses_state_dir_and_ports(tmp_path):
    s = Settings.from_env({}, state_dir=tmp_path, broker_port=19100, broker_controller_port=19101)
    broker = LocalKafkaBroker.from_settings(s)
    assert broker.state_dir == tmp_path / "kafka"
    assert broker.bootstrap_servers == "127.0.0.1:19100"


def test_cluster_id_is_kafka_shaped():
    for _ in range(50):
        cid = _cluster_id()
        assert len(cid) == 22 and not cid.startswith("-")


def test_stale_or_foreign_pid_file_is_not_running(tmp_path):
    broker = LocalKafkaBroker(state_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    broker.pid_file.write_text(json.dumps({"pid": int(done.stdout)}))  # that process has exited
    assert broker.running_pid() is None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        broker.pid_file.write_text(json.dumps({"pid": sleeper.pid}))  # alive, but not our broker
        assert broker.running_pid() is None
        assert broker.stop() is False
        assert sleeper.poll() is None, "stop() must never signal a process that is not this broker"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(BrokerError, match=f"Port {s.getsockname()[1]} on 127.0.0.1 is in use"):
            LocalKafkaBroker._check_port_free(s.getsockname()[1], wait=0.5)


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_missing_java_is_one_sentence(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JavaNotFoundError, match="No Java runtime found.*install Java 17"):
        java_executable()


def test_ivy_module_lists_dependencies():
    xml = _ivy_module(["org.apache.kafka:kafka_2.13:4.1.1"])
    assert 'org="org.apache.kafka" name="kafka_2.13" rev="4.1.1"' in xml
    from framework.errors import JarResolutionError
    with pytest.raises(JarResolutionError, match="group:artifact:version"):
        _ivy_module(["kafka"])


def test_connector_jars_are_matched_to_pysparks_own_by_artifact_name():
    from framework.spark import _artifact

    assert _artifact("org.apache.kafka__kafka-clients-3.9.0.jar") == "kafka-clients"
    assert _artifact("hadoop-client-api-3.4.1.jar") == "hadoop-client-api"
    assert _artifact("org.apache.spark__spark-sql-kafka-0-10_2.13-4.0.0.jar") == "spark-sql-kafka-0-10_2.13"
    assert _artifact("scala-library-2.13.16.jar") == "scala-library"
