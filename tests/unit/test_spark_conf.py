"""The SparkSession the framework builds: settings that change how fast plans are built."""
from __future__ import annotations

from typing import Any

from framework.settings import Settings
from framework.spark import spark_conf


def test_the_dataframe_query_context_is_off_in_the_built_configuration():
    conf = spark_conf(Settings.from_env({}), kafka_connector=False)

    assert conf["spark.python.sql.dataFrameDebugging.enabled"] == "false"
    assert spark_conf(Settings.from_env({}), {"spark.python.sql.dataFrameDebugging.enabled": "true"},
                      kafka_connector=False)["spark.python.sql.dataFrameDebugging.enabled"] == "true"


def test_building_column_expressions_records_no_python_call_site_through_py4j(spark, monkeypatch):
    """With PySpark's query context on, each functions call also sets and clears its call site in the JVM."""
    from py4j.java_gateway import GatewayClient
    from pyspark.sql import functions as F

    from framework.consumer.parsing import kafka_frame, parse_records, resolve_schema
    from framework.testing.consumer import kafka_like_frame

    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
    sent: list[str] = []
    send = GatewayClient.send_command

    def counting(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(command)
        return send(self, command, *args, **kwargs)

    frame = kafka_frame(kafka_like_frame(spark, ['{"id":1}']))
    schema = resolve_schema("id INT NOT NULL, time TIMESTAMP, val DOUBLE", spark)
    monkeypatch.setattr(GatewayClient, "send_command", counting)
    F.when(F.col("a").isNull(), F.lit(1)).otherwise(F.lit(2))
    parse_records(frame, schema)
    monkeypatch.undo()

    assert sent, "the expressions were built in the JVM"
    assert not [c for c in sent if "PySparkCurrentOrigin" in c]
