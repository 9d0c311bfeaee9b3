"""Shared fixtures: a real local Kafka broker and PostgreSQL (session-wide) and a local SparkSession."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from framework.log import configure_logging
from framework.testing import local_test_settings, running_local_broker, running_local_postgres

# Tests must not be steered by a developer's own PIPELINE_* variables, except the
# jar cache, which is worth sharing with `make run`.
for _var in [v for v in os.environ if v.startswith("PIPELINE_") and v != "PIPELINE_CACHE_DIR"]:
    del os.environ[_var]


def pytest_configure(config: pytest.Config) -> None:
    configure_logging(os.environ.get("TEST_LOG_LEVEL", "WARNING"))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):
    """A real Apache Kafka broker on free ports for the whole test session."""
    with running_local_broker(tmp_path_factory.mktemp("kafka-state")) as broker:
        yield broker


@pytest.fixture(scope="session")
def local_postgres():
    """A real local PostgreSQL server on a free port for the whole test session (Debian's package)."""
    with running_local_postgres() as server:
        yield server


@pytest.fixture
def settings(kafka_broker, tmp_path: Path):
    """Settings pointing at the session broker, with output in this test's tmp_path."""
    return local_test_settings(kafka_broker, tmp_path)


@pytest.fixture(scope="session")
def spark(kafka_broker, tmp_path_factory: pytest.TempPathFactory):
    """One local SparkSession (with Spark's Kafka connector) for the whole test session."""
    from framework.spark import build_spark_session

    settings = local_test_settings(kafka_broker, tmp_path_factory.mktemp("spark"))
    session = build_spark_session(settings, app_name="tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def iceberg_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Iceberg warehouse directory for the session (a Spark session keeps its catalog once loaded)."""
    return tmp_path_factory.mktemp("iceberg-warehouse")


@pytest.fixture
def iceberg_settings(settings, local_postgres, iceberg_warehouse):
    """``settings`` with the Iceberg catalog in the session's PostgreSQL and a namespace of this test's own."""
    import uuid

    return settings.replace(postgres_url=local_postgres.url, iceberg_warehouse=str(iceberg_warehouse),
                            iceberg_namespace=f"t_{uuid.uuid4().hex[:10]}")
