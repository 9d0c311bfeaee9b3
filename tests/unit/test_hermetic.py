"""The unit tier is hermetic: no network, no broker, no Maven download (tests/unit/conftest.py)."""
from __future__ import annotations

import socket

import pytest

from framework.settings import Settings


def test_outbound_connections_are_refused():
    with pytest.raises(AssertionError, match="unit tests must not use the network: connection to"):
        socket.create_connection(("192.0.2.1", 9092), timeout=0.5)  # TEST-NET-1: never routable


def test_loopback_stays_allowed():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass


def test_resolving_jars_is_refused(hermetic):
    if not hermetic:
        pytest.skip("integration tests run in this process: their Spark session resolves the connector")
    from framework.spark import spark_conf

    with pytest.raises(AssertionError, match="unit tests must not resolve Maven jars"):
        spark_conf(Settings.from_env({}))


def test_the_unit_spark_session_has_no_kafka_connector(spark, hermetic):
    if not hermetic:
        pytest.skip("integration tests run in this process and share a session with the connector")
    assert "spark-sql-kafka" not in spark.conf.get("spark.jars", "")
    assert spark.range(3).count() == 3


def test_no_broker_for_unit_tests(request):
    with pytest.raises(pytest.fail.Exception, match="unit tests must not start a Kafka broker"):
        request.getfixturevalue("kafka_broker")
