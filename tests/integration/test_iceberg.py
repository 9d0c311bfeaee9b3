"""IcebergWriter against the real broker, PostgreSQL (JDBC catalog) and a local Spark: exact rows, evolution."""
from __future__ import annotations

import hashlib

import pytest

from apps.consumers import METRICS_SCHEMA, WORKORDER_SCHEMA
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.sinks.evolution import SchemaEvolutionError
from framework.sinks.iceberg import IcebergWriter, last_committed_batch
from framework.sinks.iceberg_catalog import load_catalog
from tests.integration.test_consumer_kafka import MALFORMED, new_topics, produce

pytestmark = pytest.mark.integration


@pytest.fixture
def declared():
    names = []

    def declare(name: str, topics, schema=None, writer=None):
        cls = type("ItIcebergConsumer", (ConsumerSparkABC,), {
            "name": name, "topics": list(topics), "writer": writer or IcebergWriter(),
            "schema": schema or {topics[0]: METRICS_SCHEMA, topics[1]: WORKORDER_SCHEMA}})
        names.append(name)
        return cls
    yield declare
    for name in names:
        CONSUMERS.unregister(name)


@pytest.fixture
def catalog_spark(spark, iceberg_settings):
    """The session's Spark with the test catalog registered (a consumer run does the same)."""
    from framework.sinks.iceberg_catalog import spark_catalog_conf

    for key, value in spark_catalog_conf(iceberg_settings).items():
        spark.conf.set(key, value)
    return spark


def checksum(rows) -> str:
    """Order-independent digest of (partition, offset, id, val) tuples."""
    lines = sorted(f"{p}|{o}|{i}|{v!r}" for p, o, i, v in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_bounded_run_commits_each_batch_once_and_every_reader_sees_the_same_rows(spark, iceberg_settings, declared):
    import duckdb

    settings = iceberg_settings
    metrics, workorder = new_topics(settings, "ice")
    n = 900
    sent = produce(settings, metrics, workorder, n, malformed=True)
    consumer_cls = declared("it-iceberg", (metrics, workorder))
    with consumer_cls(settings, spark=spark, max_offsets_per_trigger=400) as consumer:
        writer = consumer.bound_writer
        summary = consumer.run(mode="bounded")
    m = summary.topics[metrics]
    assert (m.rows_written, m.rows_quarantined, m.lag) == (n, len(MALFORMED), 0)
    name = writer.qualified_name(metrics)

    # Spark
    df = spark.table(name)
    assert df.columns == ["id", "time", "val", "kafka_topic", "kafka_partition", "kafka_offset",
                          "kafka_timestamp", "kafka_key"]
    assert [f.nullable for f in df.schema.fields][:1] == [False]  # NOT NULL kept
    spark_rows = [tuple(r) for r in df.select("kafka_partition", "kafka_offset", "id", "val").collect()]
    assert {(p, o) for p, o, _, _ in spark_rows} == sent[metrics] and len(spark_rows) == n
    # one commit per batch, each carrying the consumer, the source and the batch id
    summaries = [r["summary"] for r in spark.sql(f"SELECT summary FROM {name}.snapshots").collect()]
    batch_ids = sorted(int(s["pipeline.batch-id"]) for s in summaries)
    assert batch_ids == list(range(m.batches)) and m.batches >= 3
    assert all(s["pipeline.consumer"] == "it-iceberg" and s["pipeline.source"] == metrics for s in summaries)
    assert last_committed_batch(spark, name, "it-iceberg", metrics) == m.batches - 1

    # pyiceberg -> Arrow, and DuckDB over that Arrow table
    arrow = load_catalog(settings).load_table(f"{settings.iceberg_namespace}.{writer.table_name(metrics)}").scan(
        selected_fields=("kafka_partition", "kafka_offset", "id", "val")).to_arrow()
    columns = ("kafka_partition", "kafka_offset", "id", "val")
    py_rows = list(zip(*(arrow.column(c).to_pylist() for c in columns), strict=True))
    duck_rows = duckdb.connect().execute("SELECT kafka_partition, kafka_offset, id, val FROM arrow").fetchall()
    assert checksum(spark_rows) == checksum(py_rows) == checksum(duck_rows)

    quarantine = {r["raw_value"].encode(): r["reason"] for r in spark.table(writer.quarantine_name(metrics)).collect()}
    assert quarantine == MALFORMED
    assert spark.table(writer.qualified_name(workorder)).count() == n

    # a second run finds nothing new and commits nothing
    snapshots = len(summaries)
    with consumer_cls(settings, spark=spark) as consumer:
        again = consumer.run(mode="bounded")
    assert (again.rows_written, again.rows_quarantined) == (0, 0)
    assert spark.sql(f"SELECT count(*) FROM {name}.snapshots").collect()[0][0] == snapshots


def test_replayed_batch_that_already_committed_is_skipped(spark, iceberg_settings, declared):
    """The crash case in one process: Iceberg committed batch 0, Spark's commit log did not record it."""
    import shutil

    settings = iceberg_settings
    metrics, workorder = new_topics(settings, "replay")
    sent = produce(settings, metrics, workorder, 300)
    consumer_cls = declared("it-iceberg-replay", (metrics, workorder))
    with consumer_cls(settings, spark=spark, max_offsets_per_trigger=0) as consumer:
        writer = consumer.bound_writer
        assert consumer.run(mode="bounded").topics[metrics].batches == 1
        commits = consumer.checkpoint_path(metrics) / "commits"
    shutil.rmtree(commits)  # Spark forgets it committed batch 0: the next run replays it
    with consumer_cls(settings, spark=spark, max_offsets_per_trigger=0) as consumer:
        consumer.run(mode="bounded")
    rows = spark.table(writer.qualified_name(metrics)).select("kafka_partition", "kafka_offset").collect()
    assert len(rows) == 300 and {tuple(r) for r in rows} == sent[metrics]
    assert spark.sql(f"SELECT count(*) FROM {writer.qualified_name(metrics)}.snapshots").collect()[0][0] == 1


def test_schema_evolution_adds_widens_and_refuses(spark, iceberg_settings, declared):
    settings = iceberg_settings
    metrics, workorder = new_topics(settings, "evolve")
    produce(settings, metrics, workorder, 50)
    v1 = "id INT NOT NULL, time TIMESTAMP, val FLOAT"
    first = declared("it-evolve", (metrics,), schema={metrics: v1})
    with first(settings, spark=spark) as consumer:
        writer = consumer.bound_writer
        consumer.run(mode="bounded")
    CONSUMERS.unregister("it-evolve")
    name = writer.qualified_name(metrics)

    produce(settings, metrics, workorder, 50, start=50)
    v2 = "id BIGINT NOT NULL, time TIMESTAMP, val DOUBLE, extra STRING"
    second = declared("it-evolve", (metrics,), schema={metrics: v2})
    with second(settings, spark=spark) as consumer:
        consumer.run(mode="bounded")
    types = {f.name: f.dataType.simpleString() for f in spark.table(name).schema.fields}
    assert (types["id"], types["val"], types["extra"]) == ("bigint", "double", "string")
    assert spark.table(name).count() == 100
    assert spark.table(name).where("extra IS NULL").count() == 100  # the records have no 'extra' field

    CONSUMERS.unregister("it-evolve")
    refused = declared("it-evolve", (metrics,), schema={metrics: "id BIGINT NOT NULL, time TIMESTAMP, val STRING"})
    with refused(settings, spark=spark) as consumer:
        with pytest.raises(SchemaEvolutionError, match=r"column 'val' is double but the consumer's schema now says "
                                                        r"string"):
            consumer.run(mode="bounded")
    CONSUMERS.unregister("it-evolve")
    dropped = declared("it-evolve", (metrics,), schema={metrics: "time TIMESTAMP, val DOUBLE"})
    with dropped(settings, spark=spark) as consumer:
        with pytest.raises(SchemaEvolutionError, match=r"column 'id' \(bigint NOT NULL\) is required"):
            consumer.run(mode="bounded")
    assert spark.table(name).count() == 100


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.heavy
def test_sigkill_after_the_iceberg_commit_and_inside_a_batch_three_times_each_is_exact(
        catalog_spark, iceberg_settings, tmp_path):
    """Runs 1-3 die right after Iceberg committed batch k (before Spark's commit log); runs 4-6 die inside a
    batch that was never committed (before Iceberg's commit); run 7 finishes. Every record is in the table exactly once.
    ``ICEBERG_KILL_TRIALS`` (default 3) sets the trials of each kind."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    settings, spark = iceberg_settings, catalog_spark
    metrics, _ = new_topics(settings, "kill")
    sent = produce(settings, metrics, _, 240)[metrics]
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
    env.update(PIPELINE_KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap_servers, PIPELINE_OUTPUT_DIR=str(tmp_path / "out"),
               PIPELINE_CHECKPOINT_DIR=str(tmp_path / "cp"), PIPELINE_SPARK_MASTER="local[2]",
               PIPELINE_POSTGRES_URL=settings.postgres_url, PIPELINE_ICEBERG_WAREHOUSE=settings.iceberg_warehouse,
               PIPELINE_ICEBERG_NAMESPACE=settings.iceberg_namespace, PIPELINE_MAX_OFFSETS_PER_TRIGGER="24",
               PIPELINE_LOG_LEVEL="INFO", ICEBERG_FIXTURE_TOPIC=metrics)
    log = tmp_path / "consume.log"
    name = f"iceberg.{settings.iceberg_namespace}.{metrics.replace('-', '_')}"
    commits = tmp_path / "cp" / "fixture-iceberg" / metrics / "commits"

    def start(extra: dict) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen([sys.executable, "cmd/consume_cmd.py", "fixture-iceberg", "--bounded", "--module",
                                     "tests.integration.iceberg_fixtures"], cwd=root, env=dict(env, **extra),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def reap(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the JVM of a killed driver
        except ProcessLookupError:
            pass

    def committed() -> int | None:
        return last_committed_batch(spark, name, "fixture-iceberg", metrics)

    trials = int(os.environ.get("ICEBERG_KILL_TRIALS", "3"))
    for k in range(trials):  # killed right after Iceberg's commit of batch k
        proc = start({"FRAMEWORK_TEST_KILL_AFTER_ICEBERG_COMMIT": str(k)})
        code = proc.wait(timeout=1200)
        reap(proc)
        assert code == -signal.SIGKILL, log.read_text()[-3000:]
        assert committed() == k and not (commits / str(k)).exists()  # the window: Iceberg yes, Spark no
    pause_dir = tmp_path / "pause"
    for _trial in range(trials):  # killed inside a batch, before Iceberg's commit
        pause_dir.mkdir(exist_ok=True)
        before = committed()
        proc = start({"ICEBERG_FIXTURE_PAUSE_DIR": str(pause_dir), "ICEBERG_FIXTURE_PAUSE_FROM": str(before + 1)})
        deadline = time.monotonic() + 1200
        while not list(pause_dir.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        marks = sorted(pause_dir.iterdir())
        assert committed() == before and len(marks) == 1
        for mark in marks:
            mark.unlink()
    proc = start({})
    assert proc.wait(timeout=1200) == 0, log.read_text()[-3000:]
    rows = spark.table(name).select("kafka_partition", "kafka_offset").collect()
    assert len(rows) == len(sent) and {tuple(r) for r in rows} == sent


def test_compaction_keeps_the_row_set_and_duckdb_answers_over_the_catalog(catalog_spark, iceberg_settings, declared):
    from framework.query.duck import DuckEngine, QueryError
    from framework.sinks.iceberg import compact

    settings, spark = iceberg_settings, catalog_spark
    metrics, workorder = new_topics(settings, "compact")
    produce(settings, metrics, workorder, 200)
    consumer_cls = declared("it-compact", (metrics,), schema={metrics: METRICS_SCHEMA},
                            writer=IcebergWriter(compact_every=0))
    with consumer_cls(settings, spark=spark, max_offsets_per_trigger=40) as consumer:
        name = consumer.bound_writer.qualified_name(metrics)
        consumer.run(mode="bounded")

    def rows():
        return checksum(tuple(r) for r in spark.table(name).select("kafka_partition", "kafka_offset", "id", "val")
                        .collect())
    before, files = rows(), spark.sql(f"SELECT count(*) FROM {name}.files").collect()[0][0]
    assert files >= 5
    result = compact(spark, name)
    assert result["rewritten"] == files and result["added"] < files
    assert spark.sql(f"SELECT count(*) FROM {name}.files").collect()[0][0] == result["added"]
    assert rows() == before

    engine = DuckEngine(settings)
    table = metrics.replace("-", "_")
    assert table in engine.tables()
    # every Iceberg table is declared at once: SHOW TABLES lists it before a statement has named it
    assert (table,) in engine.execute("SHOW TABLES")[1]
    assert [r[0] for r in engine.execute(f"DESCRIBE {table}")[1]][:3] == ["id", "time", "val"]
    _, [(count, total)] = engine.execute(f"SELECT count(*), sum(id) FROM {table}")
    assert (count, total) == (200, sum(range(200)))
    with pytest.raises(QueryError, match=f"tables: .*{table}"):
        engine.execute("SELECT * FROM no_such_table")


@pytest.fixture
def s3a_table(iceberg_settings, tmp_path, monkeypatch):
    """A bounded run into s3a://lake/warehouse on moto's S3 server (127.0.0.1), in a subprocess.

    Yields ``(settings of the s3a warehouse, table identifier, {(partition, offset)} sent, endpoint)``
    while the server runs; the AWS variables (``testing``) stay set for the test.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    import boto3
    from moto.server import ThreadedMotoServer

    from framework.local.kafka_broker import free_port

    settings = iceberg_settings
    metrics, _ = new_topics(settings, "s3a")
    sent = produce(settings, metrics, _, 120)[metrics]
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_REGION": "us-east-1"}.items():
            monkeypatch.setenv(key, value)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lake")
        s3 = settings.replace(iceberg_warehouse="s3a://lake/warehouse", iceberg_s3_endpoint=endpoint,
                              iceberg_namespace=settings.iceberg_namespace + "_s3")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_") or k == "PIPELINE_CACHE_DIR"}
        env.update(PIPELINE_KAFKA_BOOTSTRAP_SERVERS=s3.bootstrap_servers, PIPELINE_OUTPUT_DIR=str(tmp_path / "out"),
                   PIPELINE_CHECKPOINT_DIR=str(tmp_path / "cp"), PIPELINE_SPARK_MASTER="local[2]",
                   PIPELINE_POSTGRES_URL=s3.postgres_url, PIPELINE_ICEBERG_WAREHOUSE=s3.iceberg_warehouse,
                   PIPELINE_ICEBERG_S3_ENDPOINT=endpoint, PIPELINE_ICEBERG_NAMESPACE=s3.iceberg_namespace,
                   PIPELINE_MAX_OFFSETS_PER_TRIGGER="50", ICEBERG_FIXTURE_TOPIC=metrics)
        log = tmp_path / "consume.log"
        with open(log, "wb") as out:
            code = subprocess.run([sys.executable, "cmd/consume_cmd.py", "fixture-iceberg", "--bounded", "--module",
                                   "tests.integration.iceberg_fixtures"], cwd=Path(__file__).resolve().parents[2],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, timeout=2000).returncode
        assert code == 0, log.read_text()[-3000:]
        yield s3, f"{s3.iceberg_namespace}.{metrics.replace('-', '_')}", sent, endpoint
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.heavy
def test_s3a_warehouse_on_a_local_s3_server_holds_exact_rows(s3a_table):
    """The s3a table read back with pyiceberg: every record sent, once; data and metadata on the S3 server."""
    import boto3

    s3, identifier, sent, endpoint = s3a_table
    table = load_catalog(s3).load_table(identifier)
    assert table.metadata.location.startswith("s3a://lake/warehouse/")
    arrow = table.scan(selected_fields=("kafka_partition", "kafka_offset")).to_arrow()
    partitions, offsets = arrow.column("kafka_partition").to_pylist(), arrow.column("kafka_offset").to_pylist()
    rows = list(zip(partitions, offsets, strict=True))
    assert len(rows) == len(sent) and set(rows) == sent
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            .list_objects_v2(Bucket="lake")["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.heavy
def test_trino_reads_the_s3a_table_through_the_same_jdbc_catalog(s3a_table, tmp_path):
    """Trino 476 (native S3 file system, PIPELINE_ICEBERG_S3_ENDPOINT) answers the s3a table's exact rows."""
    from framework.errors import TrinoError
    from framework.local.kafka_broker import free_port
    from framework.local.trino import LocalTrino
    from framework.local.trino_dist import find_jdk
    from framework.query.trino_engine import TrinoEngine

    try:
        find_jdk()
    except TrinoError as exc:  # the one reason to skip: Trino cannot run on this machine
        pytest.skip(f"no JDK for Trino: {exc}")
    s3, identifier, sent, _ = s3a_table
    columns = ("kafka_partition", "kafka_offset", "id", "val")
    arrow = load_catalog(s3).load_table(identifier).scan(selected_fields=columns).to_arrow()
    expected = checksum(zip(*(arrow.column(c).to_pylist() for c in columns), strict=True))

    settings = s3.replace(state_dir=tmp_path / "state", trino_port=free_port())
    trino = LocalTrino.from_settings(settings)
    trino.start()
    try:
        properties = (trino.state_dir / "etc" / "catalog" / f"{s3.iceberg_catalog}.properties").read_text()
        assert f"s3.endpoint={s3.iceberg_s3_endpoint}\n" in properties and "fs.native-s3.enabled=true" in properties
        engine = TrinoEngine(settings, trino.url)
        try:
            table = identifier.split(".")[-1]
            _, rows = engine.execute(f"select {', '.join(columns)} from {table}")
            _, [(location,)] = engine.execute(f'select file_path from "{table}$files" limit 1')
        finally:
            engine.close()
    finally:
        assert trino.stop()
    assert len(rows) == len(sent) and {(p, o) for p, o, _, _ in rows} == sent
    assert checksum(rows) == expected  # the same ids and values as pyiceberg reads
    assert location.startswith("s3a://lake/warehouse/")
