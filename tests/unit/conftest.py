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
