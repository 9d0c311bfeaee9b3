from __future__ import annotations

from pathlib import Path

import pytest

from framework.errors import SettingsError
from framework.settings import Settings


def test_defaults_run_on_one_machine():
    s = Settings.from_env({})
    assert s.uses_local_broker
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.spark_master == "local[*]"
    assert s.spark_executor_memory == "512m" and s.spark_executor_cores == 1
    assert s.api_url == "http://127.0.0.1:5000"
    assert s.checkpoint_root == Path("output") / "_checkpoints"
    assert s.max_offsets_per_trigger == 1000 and s.trigger_seconds == 10.0
    assert s.starting_offsets == "earliest"


def test_values_are_typed_from_environment():
    s = Settings.from_env({
        "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9093",
        "PIPELINE_SPARK_MASTER": "spark://master:7077",
        "PIPELINE_API_PORT": "8080",
        "PIPELINE_SPARK_UI": "yes",
        "PIPELINE_TRIGGER_SECONDS": "2.5",
        "PIPELINE_OUTPUT_DIR": "/data/out",
        "OTHER_VARIABLE": "ignored",
    })
    assert not s.uses_local_broker and s.bootstrap_servers == "k1:9092,k2:9093"
    assert s.spark_master == "spark://master:7077"
    assert s.api_port == 8080 and s.spark_ui is True and s.trigger_seconds == 2.5
    assert s.output_dir == Path("/data/out") and s.checkpoint_root == Path("/data/out/_checkpoints")


@pytest.mark.parametrize("var, value, words", [
    ("PIPELINE_API_PORT", "eighty", ["PIPELINE_API_PORT", "'eighty'", "whole number"]),
    ("PIPELINE_API_PORT", "70000", ["PIPELINE_API_PORT=70000", "TCP port"]),
    ("PIPELINE_SPARK_MASTER", "mesos://x", ["PIPELINE_SPARK_MASTER", "spark://"]),
    ("PIPELINE_SPARK_EXECUTOR_MEMORY", "lots", ["PIPELINE_SPARK_EXECUTOR_MEMORY", "512m"]),
    ("PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "localhost", ["PIPELINE_KAFKA_BOOTSTRAP_SERVERS", "host:port"]),
    ("PIPELINE_SPARK_UI", "maybe", ["PIPELINE_SPARK_UI", "true or false"]),
    ("PIPELINE_PRODUCER_COMPRESSION", "brotli", ["PIPELINE_PRODUCER_COMPRESSION", "zstd"]),
    ("PIPELINE_SPARK_EXECUTOR_CORES", "0", ["PIPELINE_SPARK_EXECUTOR_CORES", "greater than 0"]),
])
def test_malformed_values_name_the_variable(var, value, words):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    message = str(err.value)
    for word in words:
        assert word in message
    assert "\n" not in message


def test_unknown_variable_is_refused_with_a_suggestion():
    with pytest.raises(SettingsError, match="Unknown setting PIPELINE_SPARK_MASTR. Did you mean PIPELINE_SPARK_MASTER"):
        Settings.from_env({"PIPELINE_SPARK_MASTR": "local[2]"})


def test_overrides_win_and_are_checked():
    s = Settings.from_env({"PIPELINE_API_PORT": "8080"}, api_port=9000)
    assert s.api_port == 9000
    with pytest.raises(SettingsError):
        Settings.from_env({}, no_such_field=1)
    with pytest.raises(SettingsError, match="PIPELINE_API_PORT"):
        s.replace(api_port=0)


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        s.api_port = 1  # type: ignore[misc]


def test_describe_lists_every_setting():
    rows = Settings.describe()
    names = [r[0] for r in rows]
    assert "PIPELINE_KAFKA_BOOTSTRAP_SERVERS" in names and "PIPELINE_CHECKPOINT_DIR" in names
    assert all(help_text for _, _, help_text in rows)


def test_zero_offsets_per_trigger_lifts_the_limit_like_the_command_option(tmp_path):
    from apps.consumers import ParquetConsumer  # the class itself: another test may have emptied the registry

    settings = Settings.from_env({"PIPELINE_MAX_OFFSETS_PER_TRIGGER": "0"}).replace(checkpoint_dir=tmp_path)
    assert settings.max_offsets_per_trigger == 0
    assert ParquetConsumer(settings).max_offsets_per_trigger == 0  # no maxOffsetsPerTrigger option
    with pytest.raises(SettingsError, match="PIPELINE_MAX_OFFSETS_PER_TRIGGER"):
        Settings.from_env({"PIPELINE_MAX_OFFSETS_PER_TRIGGER": "-1"})
