"""ConsumerSparkABC, parsing/quarantine, writers and progress on static DataFrames (no broker)."""
from __future__ import annotations

import datetime as dt
import json
import re
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from framework.commands import consume as consume_command
from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.errors import ConsumerError, DeclarationError, RegistryError
from framework.consumer.parsing import (METADATA_COLUMNS, QUARANTINE_COLUMNS, kafka_frame, resolve_schema,
                                        split_valid_invalid)
from framework.consumer.progress import (BatchLedger, ConsumerSummary, ProgressTracker, TopicSummary, batch_report,
                                checkpoint_is_fresh, committed_offsets, lag)
from framework.consumer.queries import BatchInterrupted, QueryGroup
from framework.testing.consumer import RecordingWriter, kafka_like_frame, parse_values, run_batch
from framework.sinks import MARKER, STAGING, BatchPublisher, ConsoleWriter, ForeachBatchWriter, ParquetWriter

METRICS = StructType([
    StructField("id", IntegerType(), nullable=False),
    StructField("time", TimestampType()),
    StructField("val", DoubleType()),
])
GOOD = '{"id": 1, "time": "2026-01-05T08:00:00.000Z", "val": 1.5}'


pytestmark = pytest.mark.usefixtures("restore_consumer_registry")


def declare(**attrs):
    """A consumer class made from ``attrs`` (defaults: a valid declaration)."""
    body = {"name": "unit-consumer", "topics": ["metrics"], "schema": METRICS, "writer": RecordingWriter()}
    body.update(attrs)
    body = {k: v for k, v in body.items() if v is not _MISSING}
    return type("UnitConsumer", (ConsumerSparkABC,), body)


_MISSING = object()


# ----------------------------------------------------------------------------- declaration
@pytest.mark.parametrize("attr", ["name", "topics", "schema", "writer"])
def test_missing_attribute_names_class_and_attribute(attr):
    with pytest.raises(DeclarationError, match=rf"UnitConsumer must declare the class attribute `{attr}`"):
        declare(**{attr: _MISSING})


@pytest.mark.parametrize("attrs, message", [
    ({"name": ""}, r"UnitConsumer.name must be a non-empty string"),
    ({"name": "has space"}, r"UnitConsumer.name must be .* not 'has space'"),
    ({"topics": "metrics"}, r"UnitConsumer.topics must be a list of topic names like \['metrics'\], not 'metrics'"),
    ({"topics": []}, r"UnitConsumer.topics is empty"),
    ({"topics": ["bad topic"]}, r"UnitConsumer.topics contains 'bad topic', which is not a valid Kafka topic name"),
    ({"topics": ["a", "a"]}, r"UnitConsumer.topics lists a topic twice"),
    ({"schema": 42}, r"UnitConsumer.schema must be a pyspark StructType or a DDL string"),
    ({"schema": "  "}, r"UnitConsumer.schema is an empty DDL string"),
    ({"schema": StructType([])}, r"UnitConsumer.schema declares no fields"),
    ({"schema": StructType([StructField("kafka_offset", IntegerType())])},
     r"UnitConsumer.schema declares field\(s\) 'kafka_offset', which are reserved"),
    ({"schema": StructType([StructField("Reason", StringType())])}, r"'Reason', which are reserved"),
    ({"topics": ["a", "b"], "schema": {"a": METRICS}}, r"UnitConsumer.schema is a dict.*missing: 'b'"),
    ({"topics": ["a"], "schema": {"a": METRICS, "c": METRICS}}, r"not in topics: 'c'"),
    ({"topics": ["a"], "schema": {"a": 1}}, r"UnitConsumer.schema\['a'\] must be a pyspark StructType"),
    ({"writer": ParquetWriter}, r"UnitConsumer.writer must be a writer instance like ParquetWriter\(\), not the class"),
    ({"writer": "parquet"}, r"UnitConsumer.writer must be an instance of a ForeachBatchWriter"),
    ({"fail_on_data_loss": "yes"}, r"UnitConsumer.fail_on_data_loss must be True or False"),
])
def test_wrong_declarations_fail_at_class_creation(attrs, message):
    with pytest.raises(DeclarationError, match=message):
        declare(**attrs)
    assert "unit-consumer" not in CONSUMERS


def test_valid_declaration_registers_and_abstract_bases_do_not():
    class Base(ConsumerSparkABC):
        abstract = True
        writer = RecordingWriter()
        schema = METRICS

    class Concrete(Base):
        name = "unit-concrete"
        topics = ["metrics"]

    assert CONSUMERS.get("unit-concrete") is Concrete
    assert Base not in [cls for _, cls in CONSUMERS.items()]


def test_unknown_consumer_lists_the_available_names():
    declare(name="unit-a")
    with pytest.raises(RegistryError, match=r"Unknown consumer 'unit-b'; available: .*unit-a"):
        CONSUMERS.get("unit-b")


def test_two_classes_with_one_name_are_refused():
    declare(name="unit-twice")
    with pytest.raises(RegistryError, match="Two consumers are named 'unit-twice'"):
        type("Other", (ConsumerSparkABC,), {"name": "unit-twice", "topics": ["x"], "schema": METRICS,
                                            "writer": RecordingWriter()})


def test_init_does_no_io_and_binds_a_copy_of_the_writer(unit_settings):
    cls = declare()
    consumer = cls(unit_settings)
    assert consumer._spark is None and consumer._admin is None
    assert consumer.bound_writer is not cls.writer and consumer.bound_writer.settings is unit_settings
    assert consumer.checkpoint_path("metrics") == unit_settings.checkpoint_root / "unit-consumer" / "metrics"
    assert consumer.max_offsets_per_trigger == 1000
    assert cls(unit_settings, max_offsets_per_trigger=0).max_offsets_per_trigger == 0
    with pytest.raises(ConsumerError, match="max_offsets_per_trigger=-1 is not valid"):
        cls(unit_settings, max_offsets_per_trigger=-1)


def test_the_kafka_source_hands_out_up_to_ten_thousand_records_per_poll(unit_settings, mocker):
    """Spark's Kafka source gets the consumer's options, ``kafka.max.poll.records`` among them."""
    spark = mocker.MagicMock()
    reader = spark.readStream.format.return_value
    reader.option.return_value = reader
    consumer = declare()(unit_settings, spark=spark, max_offsets_per_trigger=0)

    consumer._reader("metrics")

    spark.readStream.format.assert_called_once_with("kafka")
    options = dict(c.args for c in reader.option.call_args_list)
    assert options["kafka.max.poll.records"] == "10000"
    assert options["subscribe"] == "metrics" and options["kafka.fetch.max.wait.ms"] == "50"
    assert "maxOffsetsPerTrigger" not in options  # 0: no rate limit
    reader.load.assert_called_once_with()


def test_unknown_mode_is_refused_before_any_connection(unit_settings):
    with pytest.raises(ConsumerError, match="Unknown mode 'forever'; use one of continuous, bounded"):
        declare()(unit_settings).run(mode="forever")


# ----------------------------------------------------------------------------- parsing
def test_valid_rows_are_untouched_and_carry_kafka_metadata(spark):
    values = [GOOD, '{"id": 2, "val": 3, "extra": "ignored"}', '{"val": 2.5, "time": null, "id": -7}']
    frame = kafka_like_frame(spark, values, topic="metrics", partitions=2, keys=["k1", None, "k3"])
    valid, quarantine = split_valid_invalid(kafka_frame(frame), METRICS)
    assert valid.columns == ["id", "time", "val", *METADATA_COLUMNS]
    assert quarantine.count() == 0
    rows = sorted((r.asDict() for r in valid.collect()), key=lambda r: r["kafka_timestamp"])
    assert [(r["id"], r["val"]) for r in rows] == [(1, 1.5), (2, 3.0), (-7, 2.5)]
    assert rows[0]["time"] == dt.datetime(2026, 1, 5, 8, 0)
    assert rows[2]["time"] is None
    assert [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"], r["kafka_key"]) for r in rows] == [
        ("metrics", 0, 0, "k1"), ("metrics", 1, 0, None), ("metrics", 0, 1, "k3")]
    assert dict(valid.dtypes)["kafka_timestamp"] == "timestamp"


BAD_RECORDS = {
    "not json": "not valid JSON",
    '{"id": 1,': "not valid JSON",
    "[1, 2]": "not a JSON object (got an array)",
    "42": "not a JSON object (got a number)",
    '"text"': "not a JSON object (got a string)",
    "true": "not a JSON object (got a boolean)",
    "null": "not a JSON object (got null)",
    "": "empty value",
    None: "empty value",
    '{"time": "2026-01-05T08:00:00.000Z", "val": 1}': "missing required field 'id'",
    '{"id": null, "val": 1}': "required field 'id' is null",
    '{"id": 1, "val": "abc"}': "field 'val' expected double, got \"abc\"",
    '{"id": "4"}': "field 'id' expected int, got \"4\"",
    '{"id": 1.5}': "field 'id' expected int, got 1.5",
    '{"id": 1, "time": "yesterday"}': "field 'time' expected an ISO-8601 date-time (an epoch number needs a "
                                      "declared unit: timestamp_units), got yesterday",
    '{"id": 1, "val": [1, 2]}': "field 'val' expected double, got [1,2]",
    '{"val": "abc"}': "missing required field 'id'; field 'val' expected double, got \"abc\"",
}


def test_bad_records_go_to_quarantine_with_a_reason(spark):
    values = [GOOD, *BAD_RECORDS]
    result = parse_values(METRICS, values, spark=spark, topic="metrics")
    assert [r["id"] for r in result.rows] == [1]
    assert {q["raw_value"]: q["reason"] for q in result.quarantine} == BAD_RECORDS
    for bad in result.quarantine:
        assert list(bad) == list(QUARANTINE_COLUMNS)
        assert bad["kafka_topic"] == "metrics" and bad["kafka_partition"] == 0
        assert values[bad["kafka_offset"]] == bad["raw_value"]
        assert bad["kafka_timestamp"] is not None


def test_long_offending_values_are_shortened_in_the_reason(spark):
    result = parse_values(METRICS, ['{"id": "' + "x" * 500 + '"}'], spark=spark)
    assert result.reasons[0].startswith("field 'id' expected int, got \"xxx")
    assert result.reasons[0].endswith("...") and len(result.reasons[0]) < 140


def test_every_row_lands_in_exactly_one_output(spark):
    values = [GOOD, "x", '{"id": 3}', "[]", '{"id": "a"}', '{"id": 5, "val": 0}'] * 20
    result = parse_values(METRICS, values, spark=spark)
    assert len(result.rows) + len(result.quarantine) == len(values)
    offsets = [r["kafka_offset"] for r in result.rows] + [q["kafka_offset"] for q in result.quarantine]
    assert sorted(offsets) == list(range(len(values)))


def test_ddl_schema_and_per_topic_schemas(spark):
    schema = resolve_schema("product INT NOT NULL, production DOUBLE", spark)
    assert [(f.name, f.nullable) for f in schema.fields] == [("product", False), ("production", True)]
    with pytest.raises(DeclarationError, match="is not a valid Spark DDL schema"):
        resolve_schema("id INTEGERR", spark, owner="X.schema")
    with pytest.raises(DeclarationError, match="reserved"):
        resolve_schema("kafka_key STRING", spark)

    cls = declare(name="unit-two", topics=["metrics", "workorder"],
                  schema={"metrics": METRICS, "workorder": "time TIMESTAMP, product INT NOT NULL"})
    result = parse_values(cls, ['{"product": 3, "time": "2026-01-05T08:00:00.000Z"}', '{"time": null}'],
                          spark=spark, topic="workorder")
    assert [r["product"] for r in result.rows] == [3]
    assert result.reasons == ["missing required field 'product'"]


# ----------------------------------------------------------------------------- one batch
def test_process_batch_hands_non_empty_frames_to_the_writer(spark, unit_settings):
    recorder = RecordingWriter()

    class Doubling(ConsumerSparkABC):
        name = "unit-doubling"
        topics = ["metrics"]
        schema = METRICS
        writer = recorder

        def transform(self, df, topic):
            return df.withColumn("val", df.val * 2)

    consumer = Doubling(unit_settings, spark=spark)
    assert run_batch(consumer, [GOOD, "oops"], batch_id=7) == (1, 1)
    assert [r["val"] for r in recorder.batches[("metrics", 7)]] == [3.0]
    assert recorder.quarantined[("metrics", 7)][0]["reason"] == "not valid JSON"
    assert run_batch(consumer, [GOOD], batch_id=8) == (1, 0)
    assert ("metrics", 8) not in recorder.quarantined  # empty frames are not handed over
    assert len(recorder.rows("metrics")) == 2


def test_parquet_writer_publishes_one_file_per_batch_and_a_replay_replaces_it(spark, unit_settings):
    cls = declare(name="unit-parquet", writer=ParquetWriter())
    consumer = cls(unit_settings, spark=spark)
    consumer.bound_writer.prepare("metrics", fresh_checkpoint=True)
    table = unit_settings.output_dir / "metrics"
    quarantine = unit_settings.output_dir / "metrics_quarantine"

    good = [json.dumps({"id": i, "time": "2026-01-05T08:00:00.000Z", "val": i / 2}) for i in range(50)]
    assert run_batch(consumer, good + ["bad"], batch_id=0, partitions=3) == (50, 1)
    assert run_batch(consumer, good[:10], batch_id=1) == (10, 0)
    assert run_batch(consumer, good + ["bad"], batch_id=0, partitions=3) == (50, 1)  # a replay of batch 0

    assert sorted(p.name for p in table.glob("*.parquet")) == ["batch-000000000000.parquet",
                                                               "batch-000000000001.parquet"]
    staging = unit_settings.output_dir / STAGING / "metrics"
    assert not staging.exists() and not (table / STAGING).exists()
    # leftovers of a killed attempt are outside the table, invisible to readers and removed by prepare()
    (staging / "batch-000000000002-dead").mkdir(parents=True)
    (staging / "batch-000000000002-dead" / "part-00000.parquet").write_bytes(b"partial")
    data = pq.read_table(table)
    assert data.num_rows == 60
    assert set(data.column_names) == {"id", "time", "val", *METADATA_COLUMNS}
    assert str(data.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert pq.read_table(quarantine).column("reason").to_pylist() == ["not valid JSON"]
    consumer.bound_writer.prepare("metrics", fresh_checkpoint=False)
    assert not staging.exists()
    assert json.loads((table / MARKER).read_text()) == {"consumer": "unit-parquet", "topic": "metrics"}


def test_parquet_writer_refuses_a_new_checkpoint_or_another_consumer_over_a_table(spark, unit_settings):
    cls = declare(name="unit-owner", writer=ParquetWriter())
    consumer = cls(unit_settings, spark=spark)
    consumer.bound_writer.prepare("metrics", fresh_checkpoint=True)
    run_batch(consumer, [GOOD], batch_id=0)
    with pytest.raises(ConsumerError, match=r"already holds 1 published batch\(es\) but the checkpoint .* is new"):
        consumer.bound_writer.prepare("metrics", fresh_checkpoint=True)
    other = declare(name="unit-intruder", writer=ParquetWriter())(unit_settings, spark=spark)
    with pytest.raises(ConsumerError, match="is written by consumer 'unit-owner', not 'unit-intruder'"):
        other.bound_writer.prepare("metrics", fresh_checkpoint=False)
    renamed = declare(name="unit-renamed", writer=ParquetWriter(tables={"metrics": "metrics_v2"}))
    assert renamed(unit_settings).bound_writer.output_path("metrics") == unit_settings.output_dir / "metrics_v2"


def test_publisher_of_an_empty_frame_publishes_nothing(spark, tmp_path):
    publisher = BatchPublisher(tmp_path / "t")
    empty = spark.createDataFrame([], "a INT")
    assert publisher.publish(empty, 3) is None
    assert publisher.published_batches() == []


def test_publisher_merges_the_parts_of_a_parallel_write_into_one_file(spark, tmp_path):
    rows = [(i, dt.datetime(2026, 1, 5, 8, 0, i % 60), i / 4) for i in range(1000)]
    df = spark.createDataFrame(rows, METRICS).repartition(4)
    path = BatchPublisher(tmp_path / "t", compression="zstd").publish(df, 12)
    assert path == tmp_path / "t" / "batch-000000000012.parquet"
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [path.name]  # staging removed
    meta = pq.ParquetFile(path)
    assert meta.metadata.num_rows == 1000 and meta.metadata.num_row_groups == 4
    assert meta.metadata.row_group(0).column(0).compression == "ZSTD"
    assert not meta.schema_arrow.field("id").nullable  # NOT NULL survives the merge
    assert b"org.apache.spark.sql.parquet.row.metadata" in meta.schema_arrow.metadata
    plain = tmp_path / "plain"
    df.write.parquet(str(plain))  # what Spark reads back from its own files
    back = spark.read.parquet(str(path))
    assert back.schema == spark.read.parquet(str(plain)).schema
    assert sorted(tuple(r) for r in back.collect()) == rows
    for field in ("id", "time", "val"):
        assert pq.read_table(path).schema.field(field).type == pq.read_table(plain).schema.field(field).type


def test_one_pass_batch_counts_while_writing_and_handles_an_all_bad_batch(spark, unit_settings):
    seen = []

    class Watching(ParquetWriter):
        def write_batch(self, df, batch_id, topic):
            seen.append(df.is_cached)
            super().write_batch(df, batch_id, topic)

    consumer = declare(name="unit-one-pass", writer=Watching())(unit_settings, spark=spark)
    consumer.bound_writer.prepare("metrics", fresh_checkpoint=True)
    good = [json.dumps({"id": i, "time": "2026-01-05T08:00:00.000Z", "val": i}) for i in range(30)]
    assert run_batch(consumer, good + ["bad", "[2]"], batch_id=0, partitions=3) == (30, 2)
    assert run_batch(consumer, ["still bad"], batch_id=1) == (0, 1)
    assert seen == [False, False]  # one pass: the frame is not cached, and an empty one is handed over
    table = unit_settings.output_dir / "metrics"
    assert [p.name for p in table.glob("*.parquet")] == ["batch-000000000000.parquet"]
    reasons = pq.read_table(unit_settings.output_dir / "metrics_quarantine").column("reason").to_pylist()
    assert sorted(reasons) == ["not a JSON object (got an array)", "not valid JSON", "not valid JSON"]


def test_console_writer_prints_batches_and_quarantine(spark, unit_settings, capsys):
    consumer = declare(name="unit-console", writer=ConsoleWriter())(unit_settings, spark=spark)
    assert run_batch(consumer, [GOOD, "[1]"], batch_id=4) == (1, 1)
    out = capsys.readouterr().out
    assert "=== metrics: batch 4 ===" in out and "not a JSON object (got an array)" in out
    assert consumer.bound_writer.output_path("metrics") is None


def test_a_user_writer_only_implements_write_batch(spark, unit_settings):
    class ListWriter(ForeachBatchWriter):
        seen: list = []

        def write_batch(self, df, batch_id, topic):
            self.seen.append((topic, batch_id, df.count()))

    consumer = declare(name="unit-user-writer", writer=ListWriter())(unit_settings, spark=spark)
    assert run_batch(consumer, [GOOD, GOOD, "x"], batch_id=2) == (2, 1)
    assert ListWriter.seen == [("metrics", 2, 2)]
    assert pq.read_table(unit_settings.output_dir / "metrics_quarantine").num_rows == 1  # default quarantine


# ----------------------------------------------------------------------------- progress
PROGRESS = {
    "batchId": 4, "numInputRows": 1000, "processedRowsPerSecond": 2500.0,
    "durationMs": {"triggerExecution": 400},
    "sources": [{"endOffset": '{"m":{"0":500,"1":700}}', "latestOffset": '{"m":{"0":800,"1":700,"2":50}}'}],
}


def test_batch_report_computes_the_lag_from_spark_progress():
    report = batch_report(PROGRESS, "m", (990, 10))
    assert (report.batch_id, report.input_rows, report.lag) == (4, 1000, 350)
    assert report.line() == "m batch 4: 1000 rows (990 written, 10 quarantined) in 0.40 s, 2500 rows/s, lag 350"
    assert lag({0: 5}, {0: 3, 1: 2}) == 2


def test_tracker_reports_each_batch_once_and_skips_idle_triggers():
    ledger = BatchLedger()
    ledger.record("m", 4, 990, 10)
    tracker = ProgressTracker(ledger)
    idle = dict(PROGRESS, numInputRows=0, batchId=4)
    assert [r.written for r in tracker.feed("m", [PROGRESS, idle, PROGRESS])] == [990]
    assert tracker.feed("m", [PROGRESS]) == []
    assert tracker.latest_lag["m"] == 350
    assert ledger.totals("m") == (990, 10, 1)


def test_committed_offsets_reads_the_last_committed_batch(tmp_path):
    cp = tmp_path / "cp"
    assert checkpoint_is_fresh(cp) and committed_offsets(cp) == {}
    (cp / "offsets").mkdir(parents=True)
    (cp / "commits").mkdir()
    for batch, offsets in [(0, {"0": 10}), (1, {"0": 20, "1": 5}), (2, {"0": 30, "1": 9})]:
        (cp / "offsets" / str(batch)).write_text('v1\n{"batchWatermarkMs":0}\n' + json.dumps({"m": offsets}))
    (cp / "commits" / "0").write_text("v1\n{}")
    (cp / "commits" / "1").write_text("v1\n{}")
    assert not checkpoint_is_fresh(cp)
    assert committed_offsets(cp) == {"m": {0: 20, 1: 5}}  # batch 2 was planned but never committed


def test_summary_text_lists_topics_counts_lag_and_paths():
    summary = ConsumerSummary("parquet", "bounded", 2.0, {
        "metrics": TopicSummary("metrics", 100, 2, 3, 0, Path("out/metrics"), Path("out/metrics_quarantine"))})
    text = summary.text()
    assert summary.rows_per_second == 51.0
    assert "consumer parquet (bounded) finished after 2.0 s: 100 rows written, 2 quarantined, 51 rows/s" in text
    assert "metrics: 100 rows written, 2 quarantined, 3 batches, lag 0" in text
    assert "table:      out/metrics" in text and "quarantine: out/metrics_quarantine" in text


# ----------------------------------------------------------------------------- command
def test_list_shows_the_shipped_consumers(capsys):
    assert consume_command.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "parquet" in out and "metrics, workorder" in out and "ParquetWriter" in out and "console" in out


def test_unknown_name_exits_non_zero_with_the_available_names(capsys):
    assert consume_command.main(["metrix"]) == 2
    assert "Unknown consumer 'metrix'; available: " in capsys.readouterr().err


def test_module_option_finds_user_consumers(monkeypatch, capsys):
    module = types.ModuleType("unit_user_consumers")
    monkeypatch.setitem(sys.modules, "unit_user_consumers", module)
    exec("from framework.consumer.base import ConsumerSparkABC\n"
         "from framework.sinks import ConsoleWriter\n"
         "class Mine(ConsumerSparkABC):\n"
         "    name = 'unit-mine'\n    topics = ['events']\n    schema = 'a INT'\n    writer = ConsoleWriter()\n",
         module.__dict__)
    assert consume_command.main(["--list", "--module", "unit_user_consumers"]) == 0
    assert "unit-mine" in capsys.readouterr().out
    assert consume_command.main(["--list", "--module", "no_such_consumers_xyz"]) == 2
    assert "Cannot import module 'no_such_consumers_xyz'" in capsys.readouterr().err


def test_signal_handler_stops_then_forces(unit_settings):
    consumer = declare()(unit_settings)
    signals = consume_command.install_signal_handlers(consumer)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        handler(signal.SIGTERM, None)
        assert consumer.stopping
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    finally:
        signals.restore()
    assert signal.getsignal(signal.SIGTERM) is not handler
    assert signals.received == "SIGTERM"


# ----------------------------------------------------------------------------- stopping
class FakeQuery:
    """Just enough of a StreamingQuery for QueryGroup."""

    def __init__(self, failure: str | None = None) -> None:
        self.isActive = failure is None
        self.failure = failure
        self.stopped_at: float | None = None

    def exception(self):
        return self.failure

    def awaitTermination(self, timeout):
        ends = time.monotonic() + timeout
        while self.isActive and time.monotonic() < ends:
            time.sleep(0.005)
        return not self.isActive

    def stop(self) -> None:
        self.stopped_at = time.monotonic()
        self.isActive = False


def test_stop_lets_the_running_batch_finish_first():
    group = QueryGroup("unit", threading.Event(), grace=10)
    query = FakeQuery()
    group.add("metrics", query)
    finished = []

    def body(df, batch_id):
        time.sleep(0.5)
        finished.append(time.monotonic())

    batch = threading.Thread(target=group.guard("metrics", body), args=(None, 3))
    batch.start()
    time.sleep(0.1)
    group.stop()
    batch.join()
    assert finished and query.stopped_at >= finished[0]


def test_errors_caused_by_stop_become_one_short_interruption_spark_recognises():
    stop = threading.Event()
    group = QueryGroup("unit", stop, grace=1)
    query = FakeQuery()
    group.add("metrics", query)

    def failing(df, batch_id):
        raise RuntimeError("a genuine failure\n" + "at java.lang.Thread.run\n" * 1000)

    with pytest.raises(RuntimeError, match="a genuine failure"):  # not stopping: the real error
        group.guard("metrics", failing)(None, 1)
    stop.set()
    query.stop()
    with pytest.raises(BatchInterrupted) as info:
        group.guard("metrics", failing)(None, 2)
    # the pattern of Spark's StreamExecution.PROXY_ERROR, which must match a short message
    spark_pattern = (r"py4j.protocol.Py4JJavaError: An error occurred while calling((.|\r\n|\r|\n)*)"
                     r"(java.lang.InterruptedException|java.io.InterruptedIOException)")
    assert re.search(spark_pattern, str(info.value)) and len(str(info.value)) < 200
    with pytest.raises(BatchInterrupted):  # a batch that begins while stopping does no work
        group.guard("metrics", lambda df, batch_id: pytest.fail("must not run"))(None, 3)


def test_wait_reports_a_failed_query_and_honours_the_timeout():
    group = QueryGroup("unit", threading.Event())
    group.add("metrics", FakeQuery(failure="org.apache.spark.SparkException: boom\n\tat x.y(z)"))
    with pytest.raises(ConsumerError, match="query of consumer 'unit' for topic 'metrics' failed: "
                                            "org.apache.spark.SparkException: boom"):
        group.wait(None, time.monotonic())
    stop = threading.Event()
    group = QueryGroup("unit", stop)
    group.add("metrics", FakeQuery())
    assert group.wait(timeout=0.2, started=time.monotonic()) is True and stop.is_set()
    done = QueryGroup("unit", threading.Event())
    finished = FakeQuery()
    finished.isActive = False
    done.add("metrics", finished)
    assert done.wait(None, time.monotonic()) is False


def test_wait_returns_as_soon_as_the_last_query_ends():
    group = QueryGroup("unit", threading.Event())
    query = FakeQuery()
    group.add("metrics", query)
    threading.Timer(0.3, query.stop).start()
    started = time.monotonic()
    assert group.wait(None, started) is False
    assert time.monotonic() - query.stopped_at < 0.1  # not a whole polling interval later


def test_a_small_planned_batch_is_collected_and_written_like_sparks_own_file(spark, unit_settings):
    from framework.sinks import planning

    consumer = declare(name="unit-collect", writer=ParquetWriter(collect_below=1000))(unit_settings, spark=spark)
    consumer.bound_writer.prepare("metrics", fresh_checkpoint=True)
    good = [json.dumps({"id": i, "time": "2026-01-05T08:00:00.000Z", "val": i}) for i in range(20)]
    with planning(21):  # below collect_below: collected as Arrow, no Spark write job
        assert run_batch(consumer, good + ["bad"], batch_id=0, partitions=3) == (20, 1)
    assert run_batch(consumer, good, batch_id=1, partitions=3) == (20, 0)  # unknown size: Spark writes
    table = unit_settings.output_dir / "metrics"
    collected, written = (pq.ParquetFile(table / f"batch-00000000000{i}.parquet") for i in (0, 1))
    assert collected.schema_arrow.remove_metadata() == written.schema_arrow.remove_metadata()
    key = b"org.apache.spark.sql.parquet.row.metadata"  # the Spark schema, read back by Spark
    assert json.loads(collected.schema_arrow.metadata[key]) == json.loads(written.schema_arrow.metadata[key])
    assert spark.read.parquet(str(table)).count() == 40
    assert pq.read_table(table).column("time").to_pylist()[0] == dt.datetime(2026, 1, 5, 8, tzinfo=dt.timezone.utc)
    assert pq.read_table(unit_settings.output_dir / "metrics_quarantine").num_rows == 1


def test_planned_records_reads_the_batch_range_from_the_offset_log(tmp_path):
    from framework.consumer.progress import planned_records

    (tmp_path / "sources" / "0").mkdir(parents=True)
    (tmp_path / "offsets").mkdir()
    (tmp_path / "sources" / "0" / "0").write_text('\x00v1\n{"m":{"0":5,"1":0}}')
    meta = '{"batchWatermarkMs":0,"batchTimestampMs":1}'
    (tmp_path / "offsets" / "0").write_text(f'v1\n{meta}\n{{"m":{{"0":55,"1":47}}}}')
    (tmp_path / "offsets" / "1").write_text(f'v1\n{meta}\n{{"m":{{"0":60,"1":47}}}}')
    (tmp_path / "offsets" / "2").write_text(f'v1\n{meta}\n{{"m":{{"0":60,"1":47,"2":3}}}}')  # a new partition
    assert planned_records(tmp_path, 0) == 97
    assert planned_records(tmp_path, 1) == 5
    assert planned_records(tmp_path, 2) is None
    assert planned_records(tmp_path, 7) is None


def test_batch_line_counts_each_record_once_when_the_quarantine_rereads_the_batch():
    # the one-pass writer reads a batch with a bad record twice (rows, then quarantine): Spark reports 6 input rows
    progress = dict(PROGRESS, numInputRows=6, processedRowsPerSecond=12.0, batchId=0)
    report = batch_report(progress, "m", (2, 1))
    assert report.input_rows == 3
    assert report.line().startswith("m batch 0: 3 rows (2 written, 1 quarantined) in 0.40 s, 6 rows/s")
