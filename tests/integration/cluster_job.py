"""A Spark job for tests/integration/test_clusters.py, run in its own process.

A process can hold only one SparkContext, and the test process may already
have a local one, so the test runs this script instead::

    PIPELINE_SPARK_MASTER=spark://127.0.0.1:7077 PIPELINE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \\
        python tests/integration/cluster_job.py <topic> <expected executors>

It builds the session with framework.spark.build_spark_session from the
PIPELINE_* environment, waits (bounded) until the expected executors have
registered, runs a Python RDD job and a batch read of ``<topic>`` through
Spark's Kafka connector, and prints one JSON object as the last stdout line.
"""
from __future__ import annotations

import json
import sys
import time

from framework.settings import Settings
from framework.spark import build_spark_session

EXECUTOR_WAIT = 60.0


def main(topic: str, expected_executors: int) -> dict:
    settings = Settings.from_env()
    spark = build_spark_session(settings, app_name="cluster-job")
    try:
        sc = spark.sparkContext
        tracker = sc._jsc.sc().statusTracker()  # the JVM tracker lists executors; the Python one does not
        deadline = time.monotonic() + EXECUTOR_WAIT
        while len(tracker.getExecutorInfos()) - 1 < expected_executors and time.monotonic() < deadline:
            time.sleep(0.5)  # executors register a moment after the context starts
        infos = tracker.getExecutorInfos()
        executors = [f"{i.host()}:{i.port()}" for i in infos]
        # Python code shipped to the executors' Python workers.
        squares = sc.parallelize(range(1000), 4).map(lambda x: x * x).sum()
        rows = (spark.read.format("kafka")
                .option("kafka.bootstrap.servers", settings.bootstrap_servers)
                .option("subscribe", topic)
                .option("startingOffsets", "earliest")
                .option("endingOffsets", "latest")
                .load()
                .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "partition", "offset")
                .collect())
        return {
            "app_id": sc.applicationId,
            "master": sc.master,
            "executors": len(infos) - 1,  # the driver is listed too
            "block_managers": executors,
            "executor_memory_status": sc._jsc.sc().getExecutorMemoryStatus().size(),
            "squares": squares,
            "records": [[r.key, r.value, r.partition, r.offset] for r in rows],
        }
    finally:
        spark.stop()


if __name__ == "__main__":
    result = main(sys.argv[1], int(sys.argv[2]))
    print(json.dumps(result))
