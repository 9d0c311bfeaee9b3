"""Unit-test fixtures: a local SparkSession for static DataFrames (no broker needed)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_spark_session():
    """The active SparkSession, or one local[2] session built like the framework's own.

    Built with :func:`framework.spark.build_spark_session` (Kafka connector included)
    so that integration tests later in the same pytest process can reuse it: one JVM.
    Not stopped here; the integration ``spark`` fixture (or interpreter exit) stops it.
    """
    from framework.testing.consumer import local_spark

    return local_spark()


@pytest.fixture
def restore_consumer_registry():
    """Consumer classes declared by a test do not stay registered."""
    from framework.consumer.base import CONSUMERS

    saved = dict(CONSUMERS._classes)
    yield
    CONSUMERS._classes.clear()
    CONSUMERS._classes.update(saved)


@pytest.fixture
def spark(local_spark_session):
    """The unit tests' local SparkSession, under the name the tests use."""
    return local_spark_session


@pytest.fixture
def unit_settings(tmp_path):
    """Settings with output and checkpoints in this test's tmp_path, local Spark."""
    from framework.settings import Settings

    return Settings.from_env().replace(output_dir=tmp_path / "out", checkpoint_dir=tmp_path / "cp",
                                       spark_master="local[2]")
