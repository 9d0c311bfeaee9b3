"""Unit-test fixtures. The unit tier is hermetic: no network, no broker, no Maven download.

- Every test here runs with outbound connections to anything but the loopback address refused.
- When the session holds unit tests only (``make test-unit``), the local SparkSession is built
  *without* Spark's Kafka connector and any attempt to resolve Maven jars fails the test.
  When integration tests run in the same process (``make test``), the session is built with
  the connector so that they can reuse it (one JVM).
"""
from __future__ import annotations

import ipaddress
import socket

import pytest


def _integration_in_session(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("integration") for item in session.items)


@pytest.fixture(scope="session")
def hermetic(request: pytest.FixtureRequest) -> bool:
    """True when no integration test runs in this pytest process (``make test-unit``)."""
    return not _integration_in_session(request.session)


@pytest.fixture(scope="session")
def local_spark_session(hermetic):
    """The active SparkSession, or one local[2] session built like the framework's own.

    Without the Kafka connector in the hermetic tier; with it when integration tests
    run later in the same process, so that they can reuse it. Not stopped here; the
    integration ``spark`` fixture (or interpreter exit) stops it.
    """
    from framework.testing.consumer import local_spark

    return local_spark(kafka_connector=not hermetic)


def _loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths and the like stay on this machine


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse connections that leave the machine (a unit test that needs the network is wrong)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(self, address):
            if not _loopback(address):
                raise AssertionError(f"unit tests must not use the network: connection to {address!r}")
            return real(self, address)
        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))


@pytest.fixture(autouse=True)
def _no_jar_resolution(hermetic, monkeypatch):
    """In the hermetic tier, resolving Maven jars (Kafka broker, Spark connector) fails the test."""
    if not hermetic:
        return

    def refuse(name, coordinates, cache_dir):
        raise AssertionError(f"unit tests must not resolve Maven jars ({name}: {', '.join(coordinates)}); "
                             "mock the resolver or mark the test @pytest.mark.integration")

    monkeypatch.setattr("framework.local.jars.resolve", refuse)
    monkeypatch.setattr("framework.spark.resolve", refuse)
    monkeypatch.setattr("framework.local.kafka_broker.resolve", refuse)


@pytest.fixture(scope="session")
def kafka_broker():
    """Unit tests get no broker: the shared fixture of tests/conftest.py is for integration tests."""
    pytest.fail("unit tests must not start a Kafka broker; use framework.testing.producer's fakes, or move the "
                "test to tests/integration")


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
