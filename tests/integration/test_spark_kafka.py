"""Spark reads the local broker through its own Kafka connector (spark-sql-kafka-0-10)."""
from __future__ import annotations

import pytest
from kafka import KafkaProducer

from framework.admin import KafkaAdmin
from framework.spark import kafka_connector_package

pytestmark = pytest.mark.integration


def test_spark_batch_read_returns_exact_records(spark, settings):
    import pyspark

    assert kafka_connector_package().endswith(f"spark-sql-kafka-0-10_2.13:{pyspark.__version__}")
    jars = spark.conf.get("spark.jars")
    assert f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar" in jars and "kafka-clients" in jars
    with KafkaAdmin(settings) as admin:
        admin.create_topic("spark-read", partitions=3)
    sent = {f'{{"n": {i}}}'.encode() for i in range(250)}
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for value in sent:
        producer.send("spark-read", key=value[-3:], value=value)
    producer.flush()
    producer.close()

    df = (spark.read.format("kafka")
          .option("kafka.bootstrap.servers", settings.bootstrap_servers)
          .option("subscribe", "spark-read").load())
    rows = df.select("value", "partition", "offset").collect()
    assert len(rows) == 250
    assert {bytes(r.value) for r in rows} == sent
    assert {r.partition for r in rows} == {0, 1, 2}
    assert len({(r.partition, r.offset) for r in rows}) == 250
