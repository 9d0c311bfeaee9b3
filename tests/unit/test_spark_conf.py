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


def test_streaming_checkpoints_are_written_through_the_file_system_api(spark, tmp_path):
    """The manager Spark's stream execution creates for a checkpoint (CheckpointFileManager.create)."""
    assert spark_conf(Settings.from_env({}), kafka_connector=False)[
        "spark.sql.streaming.checkpointFileManagerClass"].endswith(".FileSystemBasedCheckpointFileManager")
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    manager = jvm.org.apache.spark.sql.execution.streaming.CheckpointFileManager.create(
        jvm.org.apache.hadoop.fs.Path(str(tmp_path / "checkpoint")), hadoop_conf)

    assert manager.getClass().getSimpleName() == "FileSystemBasedCheckpointFileManager"
    assert manager.isLocal()


def test_a_bounded_stream_writes_its_offset_and_commit_logs_with_that_manager(spark, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.txt").write_text("x\ny\n")
    checkpoint = tmp_path / "checkpoint"
    seen: list[int] = []
    query = (spark.readStream.text(str(source)).writeStream.option("checkpointLocation", str(checkpoint))
             .foreachBatch(lambda df, batch_id: seen.append(df.count())).trigger(availableNow=True).start())
    query.awaitTermination(60)

    assert seen == [2]
    assert (checkpoint / "offsets" / "0").is_file() and (checkpoint / "commits" / "0").is_file()
    assert not list(checkpoint.rglob("*.tmp")), "every temporary file was renamed into place"
