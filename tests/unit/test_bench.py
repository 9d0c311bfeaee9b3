"""The benchmark's pure parts, without a broker: parsing, statistics, synthetic feed, sweep, report."""
from __future__ import annotations

import json
import math

import orjson
import pytest

from bench import sweep as sweep_module
from bench.clients import NullProducer, TimedProducer
from bench.command import build_parser, options_from_args
from bench.errors import BenchError, ReferenceToolError
from bench.perftool import parse_summary, perf_command, producer_props
from bench.producers import producer_class, forget, run_timed
from bench.report import BenchReport, Figure, Table, figures_table, fmt, markdown_table
from bench.runner import SECTIONS, check_sections
from bench.stats import LatencySummary, Throughput, median, percentile, ratio
from bench.sweep import (SweepGrid, SweepPoint, SweepResult, parse_values, recommend)
from bench.synthetic import MIN_PADDED_SIZE, MemoryNdjsonSession, SyntheticRecords, paced_ranges
from framework.sources.http import NdjsonStream
from framework.settings import Settings
from framework.testing.producer import InMemoryKafka, RecordingProducer

SUMMARY = ("500000 records sent, 84217.6 records/sec (4.50 MB/sec), 829.24 ms avg latency, 1786.00 ms max "
           "latency, 998 ms 50th, 1327 ms 95th, 1363 ms 99th, 1385 ms 99.9th.")
INTERIM = "335444 records sent, 65350.5 records/sec (3.49 MB/sec), 625.0 ms avg latency, 1786.0 ms max latency."


# ----------------------------------------------------------------------------- ProducerPerformance
def test_parse_summary_reads_the_last_summary_line_not_the_interim_ones():
    output = f"Reading payloads from: /tmp/p.jsonl\n{INTERIM}\n{SUMMARY}\n"
    result = parse_summary(output)
    assert result.records == 500000
    assert result.records_per_s == 84217.6
    assert result.mb_per_s == 4.50
    assert result.avg_latency_ms == 829.24
    assert result.max_latency_ms == 1786.0
    assert (result.p50_ms, result.p95_ms, result.p99_ms, result.p999_ms) == (998, 1327, 1363, 1385)


def test_parse_summary_without_a_summary_quotes_the_output():
    with pytest.raises(ReferenceToolError, match="(?s)no summary line.*625.0 ms avg latency"):
        parse_summary(INTERIM + "\n")


def test_perf_command_passes_the_producer_properties_and_one_payload_kind(tmp_path):
    props = producer_props("127.0.0.1:9092", "all", 65536, 20, "none")
    assert props["enable.idempotence"] == "true"
    assert producer_props("h:1", "1", 1, 0, "none")["enable.idempotence"] == "false"
    cmd = perf_command("cp", "t", 1000, props, record_size=56)
    tail = cmd[cmd.index("org.apache.kafka.tools.ProducerPerformance") + 1:]
    assert tail[:8] == ["--topic", "t", "--num-records", "1000", "--record-size", "56", "--throughput", "-1"]
    assert "acks=all" in tail and "batch.size=65536" in tail and "bootstrap.servers=127.0.0.1:9092" in tail
    with pytest.raises(ReferenceToolError, match="exactly one"):
        perf_command("cp", "t", 1, props)
    with pytest.raises(ReferenceToolError, match="exactly one"):
        perf_command("cp", "t", 1, props, record_size=5, payload_file=tmp_path / "p")


# ----------------------------------------------------------------------------- statistics
def test_percentile_interpolates_between_closest_ranks():
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 0) == 1
    assert percentile([1, 2, 3, 4], 100) == 4
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_latency_summary_is_in_milliseconds():
    summary = LatencySummary.from_seconds([0.001 * i for i in range(1, 101)])
    assert summary.count == 100
    assert summary.avg_ms == pytest.approx(50.5)
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100.0)
    assert math.isnan(LatencySummary.from_seconds([]).p99_ms)


def test_throughput_median_and_ratio():
    t = Throughput(records=2000, bytes=2 * 1024 * 1024, seconds=2.0)
    assert t.records_per_s == 1000
    assert t.mb_per_s == 1.0  # MB = 2**20 bytes, like ProducerPerformance
    assert math.isnan(Throughput(0, 0, 0.0).records_per_s)
    assert median([3.0, float("nan"), 1.0, 2.0]) == 2.0
    assert ratio(50, 100) == 0.5
    assert ratio(50, 0) is None and ratio(None, 3) is None


# ----------------------------------------------------------------------------- synthetic records and feed
def test_synthetic_records_have_the_asked_size_and_the_metrics_shape():
    padded = list(SyntheticRecords(size=200).records(500))
    assert {len(r) for r in padded} == {200}
    natural = list(SyntheticRecords().records(2000))
    assert all(53 <= len(r) <= 57 for r in natural)
    first = orjson.loads(natural[0])
    assert first == {"id": 1, "time": "2026-01-05T06:00:00.000Z", "val": first["val"]}
    assert orjson.loads(natural[1001])["time"] == "2026-01-05T06:00:01.001Z"
    assert list(SyntheticRecords().records(50)) == natural[:50]  # deterministic
    with pytest.raises(BenchError, match=f"at least {MIN_PADDED_SIZE}"):
        SyntheticRecords(size=40)


def test_synthetic_days_roll_over():
    records = list(SyntheticRecords(step_ms=3_600_000).records(20))
    assert orjson.loads(records[17])["time"] == "2026-01-05T23:00:00.000Z"
    assert orjson.loads(records[18])["time"] == "2026-01-06T00:00:00.000Z"


def test_memory_session_serves_wire_lines_from_a_position_through_the_real_stream_reader():
    lines = SyntheticRecords().wire_lines(5000)
    assert lines[3].startswith(b'{"_position":3,"id":4,')
    session = MemoryNdjsonSession(lines, chunk_size=1000)  # chunks cut lines: the reader must rejoin them
    stream = NdjsonStream(session, "http://memory.invalid/s")
    got = list(stream.lines(start=1200))
    assert [p for p, _ in got] == list(range(1200, 5000))
    assert b'{"_position":1200,' + got[0][1][1:] + b"\n" == lines[1200]  # the record, _position cut out
    assert session.requests == [{"from": 1200}]


def test_paced_ranges_follow_the_rate_on_a_fake_clock():
    now = [100.0]
    released: list[tuple[float, int, int]] = []

    def sleep(seconds: float) -> None:
        now[0] += max(seconds, 0.0005)

    for low, high in paced_ranges(10, rate=1000, clock=lambda: now[0], sleep=sleep):
        released.append((now[0], low, high))
    assert released[0][1:] == (0, 1)  # the first record at once
    assert [r[1] for r in released[1:]] == [r[2] for r in released[:-1]]  # contiguous, nothing skipped
    assert released[-1][2] == 10
    for at, _low, high in released:
        assert at - 100.0 >= (high - 1) / 1000 - 1e-9  # nothing released before it is due
    assert now[0] - 100.0 == pytest.approx(0.009, abs=0.002)  # 10 records at 1000/s take 9 ms
    assert list(paced_ranges(10, rate=0)) == [(0, 10)]
    assert list(paced_ranges(0, rate=5)) == []


def test_paced_session_skips_pacing_for_a_resume_catch_up():
    session = MemoryNdjsonSession(SyntheticRecords().wire_lines(3), rate=0.001)  # one record per 1000 s
    body = b"".join(session.get("u", params={"from": 0, "delay": 0}).iter_content())
    assert body.count(b"\n") == 3


def test_the_producer_sends_every_synthetic_record_through_the_timed_client():
    kafka = InMemoryKafka()
    clients = kafka.clients()
    factory = clients.pop("producer_factory")
    cls = producer_class("unit-bench-feed", "http://memory.invalid/s", partitions=3)
    try:
        run = run_timed(cls, Settings.from_env(), session=MemoryNdjsonSession(SyntheticRecords().wire_lines(400)),
                        client_factory=factory, sample=4, **clients)
    finally:
        forget(cls)
    assert run.sent == 400 and len(kafka.messages("unit-bench-feed")) == 400
    assert run.latency.count == 100  # one record in four timed
    assert run.throughput.records == 400 and run.throughput.seconds > 0
    assert run.extra["window_wall"][0] <= run.extra["window_wall"][1]


def test_timed_producer_counts_bytes_and_samples_latencies():
    inner = RecordingProducer(auto_ack=False)
    timed = TimedProducer(inner, sample=2)
    for _ in range(5):
        timed.send("t", value=b"x" * 10, partition=0)
    assert timed.latencies == []  # nothing acknowledged before the flush
    timed.flush()
    assert timed.sent == 5 and timed.value_bytes == 50 and len(timed.latencies) == 3
    assert timed.throughput().records == 5 and timed.throughput().bytes == 50
    assert NullProducer().send("t", value=b"v").is_done


# ----------------------------------------------------------------------------- sweep
def test_grid_expands_to_the_product_in_flag_order():
    grid = SweepGrid(partitions=(1, 3), batch_size=(16384,), linger_ms=(0, 20), compression=("none",),
                     acks=("1", "all"))
    points = grid.points()
    assert len(points) == 8
    assert points[0] == SweepPoint(1, 16384, 0, "none", "1")
    assert points[1] == SweepPoint(1, 16384, 0, "none", "all")
    assert points[-1] == SweepPoint(3, 16384, 20, "none", "all")
    assert points[-1].label == "1br rf1 isr1 p3 b16k l20 none acks=all"
    assert len(SweepGrid().points()) == 2 * 2 * 2 * 2 * 2


def test_point_client_settings_keep_idempotence_only_with_acks_all():
    assert SweepPoint(3, 1000, 5, "gzip", "all").client_overrides() == {
        "batch_size": 1000, "linger_ms": 5, "compression_type": "gzip", "acks": "all", "enable_idempotence": True}
    one = SweepPoint(3, 1000, 5, "none", "1").client_overrides()
    assert one["acks"] == 1 and one["enable_idempotence"] is False and one["compression_type"] is None


def test_grid_check_and_value_parsing_name_the_bad_flag(monkeypatch):
    assert parse_values("1, 3", "--partitions") == (1, 3)
    assert parse_values("None,LZ4", "--compression", str) == ("none", "lz4")
    with pytest.raises(BenchError, match="--batch-size 'big' is not a whole number"):
        parse_values("16384,big", "--batch-size")
    with pytest.raises(BenchError, match="--acks '2' is not valid; use 0, 1, all"):
        SweepGrid(acks=("2",)).check()
    with pytest.raises(BenchError, match="--compression 'brotli' is not valid"):
        SweepGrid(compression=("brotli",)).check()
    with pytest.raises(BenchError, match="--partitions 0"):
        SweepGrid(partitions=(0,)).check()
    with pytest.raises(BenchError, match="lists a value twice"):
        SweepGrid(linger_ms=(0, 0)).check()
    monkeypatch.setattr(sweep_module, "codec_available", lambda name: name in ("none", "gzip"))
    with pytest.raises(BenchError, match=r"needs the Python package lz4 .*available here: none, gzip"):
        SweepGrid(compression=("none", "lz4")).check()


def _result(acks: str, rate: float, p99: float, linger: int = 0, error: str = "") -> SweepResult:
    return SweepResult(SweepPoint(3, 16384, linger, "none", acks), records_per_s=rate, p99_ms=p99, avg_ms=p99 / 2,
                       error=error)


def test_recommend_prefers_the_fastest_durable_point_within_the_budget():
    results = [_result("1", 90_000, 10), _result("all", 50_000, 300, linger=20), _result("all", 40_000, 80),
               _result("all", 45_000, 90, linger=5), _result("all", 99_000, 1, error="failed")]
    best = recommend(results, latency_budget_ms=100)
    assert best is not None and best.result is results[3]
    assert "p99 <= 100 ms" in best.reason
    assert recommend(results, latency_budget_ms=None).result is results[1]
    assert recommend(results, latency_budget_ms=100, durable_only=False).result is results[0]


def test_recommend_falls_back_to_the_lowest_p99_and_to_none():
    results = [_result("all", 50_000, 300), _result("all", 30_000, 200)]
    best = recommend(results, latency_budget_ms=100)
    assert best.result is results[1] and "lowest p99" in best.reason
    assert recommend([_result("1", 10, 1)], latency_budget_ms=100) is None
    assert recommend([], 100) is None


# ----------------------------------------------------------------------------- report
def test_markdown_table_aligns_and_escapes():
    text = markdown_table(["a", "b"], [["x|y", "1"]], "lr")
    assert text.splitlines() == ["| a | b |", "| --- | ---: |", "| x\\|y | 1 |"]


def test_figures_table_shows_ratio_target_and_verdict():
    figures = [Figure("produce", "full path: records/s", "records/s", 21_000.0, 84_217.6, "kafka-producer-perf-test",
                      ">= 0.5 x ref", False),
               Figure("latency", "end-to-end p99", "ms", 1234.5, None, "", "< 2,000 ms", True)]
    lines = figures_table(figures).splitlines()
    assert lines[2] == ("| produce | full path: records/s [records/s] | 21,000 | 84,218 (kafka-producer-perf-test) "
                        "| 0.25 | >= 0.5 x ref | **no** |")
    assert lines[3] == "| latency | end-to-end p99 [ms] | 1,234 | n/a | n/a | < 2,000 ms | yes |"
    assert fmt(float("nan")) == "n/a" and fmt(12.345, "ms") == "12.3" and fmt(1.5, "MB/s") == "1.50"


def test_report_saves_valid_json_and_markdown(tmp_path):
    report = BenchReport(started="2026-01-01 00:00:00", command="python cmd/bench_cmd.py --quick",
                         environment={"cores": "2"})
    report.figures.append(Figure("api", "records served", "records/s", float("nan"), 10.0))
    report.tables.append(Table("Sweep", ["#"], [["1"]], notes=["a note"]))
    report.plots.append("sweep.png")
    json_path, md_path = report.save(tmp_path / "out")
    data = json.loads(json_path.read_text())  # strict JSON: NaN became null
    assert data["figures"][0]["ours"] is None and data["figures"][0]["ratio"] is None
    text = md_path.read_text()
    assert "### Sweep" in text and "- a note" in text and "![sweep](sweep.png)" in text


# ----------------------------------------------------------------------------- command
def test_sections_are_checked_and_run_in_order():
    assert check_sections(["sweep", "produce"]) == ("produce", "sweep")
    with pytest.raises(BenchError, match="Unknown section 'latncy'; choose from " + ", ".join(SECTIONS)):
        check_sections(["latncy"])


def test_quick_options_and_overrides(tmp_path):
    settings = Settings.from_env()
    quick = options_from_args(build_parser().parse_args(["--quick", "--out", str(tmp_path)]), settings)
    assert quick.produce.records == 100_000 and quick.produce.repeat == 2
    assert len(quick.sweep.grid.points()) == 8 and quick.profile.processes == (1, 2)
    custom = options_from_args(build_parser().parse_args(
        ["--only", "sweep", "--partitions", "1,3", "--batch-size", "16384", "--linger-ms", "0,20",
         "--compression", "none", "--acks", "1,all", "--brokers", "1"]), settings)
    assert custom.sections == ("sweep",) and len(custom.sweep.grid.points()) == 8
    assert {(p.brokers, p.replication_factor, p.min_insync_replicas) for p in quick.sweep.grid.points()} == {
        (1, 1, 1), (3, 1, 1), (3, 3, 1), (3, 3, 2)}
    # 4 runs: each of 2 executors publishes 2 of chat-sim's 4 partitions, so start-up cannot fill the window
    assert quick.simulate.runs == 4 and quick.simulate.timesteps == 4000 and quick.simulate.spark
    with pytest.raises(SystemExit):  # refused by the parser (every bound: tests/unit/test_cli_bounds.py)
        build_parser().parse_args(["--records", "0"])


def test_jdbc_and_dashboard_options():
    settings = Settings.from_env()
    quick = options_from_args(build_parser().parse_args(["--quick", "--only", "dashboard,jdbc"]), settings)
    assert quick.sections == ("jdbc", "dashboard") and SECTIONS.index("dashboard") == SECTIONS.index("jdbc") + 1
    assert quick.jdbc.repeat == 3 and quick.jdbc.records == 100_000 and quick.dashboard.loads == 3
    custom = options_from_args(build_parser().parse_args(["--jdbc-repeat", "1", "--dashboard-loads", "7"]), settings)
    assert custom.jdbc.repeat == 1 and custom.dashboard.loads == 7
    with pytest.raises(SystemExit):  # argparse refuses it in one sentence (bounded option)
        build_parser().parse_args(["--dashboard-loads", "0"])


def test_cluster_dimensions_leave_out_impossible_points_and_order_by_broker_count():
    grid = SweepGrid(partitions=(3,), batch_size=(16384,), linger_ms=(0,), compression=("none",), acks=("all",),
                     brokers=(3, 1), replication_factor=(1, 2, 3), min_insync_replicas=(1, 2))
    points = grid.points()
    assert [(p.brokers, p.replication_factor, p.min_insync_replicas) for p in points] == [
        (3, 1, 1), (3, 2, 1), (3, 2, 2), (3, 3, 1), (3, 3, 2), (1, 1, 1)]
    assert points[2].label == "3br rf2 isr2 p3 b16k l0 none acks=all" and points[2].survives_a_broker_loss
    assert not points[1].survives_a_broker_loss and points[1].topic_configs() == {"min.insync.replicas": "1"}
    with pytest.raises(BenchError, match="No sweep point is possible"):
        SweepGrid(brokers=(1,), replication_factor=(3,)).check()


def test_the_environment_starts_pipeline_broker_count_brokers(monkeypatch):
    from bench import environment as environment_module

    started = []

    class FakeKafka:
        bootstrap_servers = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"

        def stop(self):
            started.append("stopped")

    def fake_start(settings, brokers, state_dir):
        started.append(brokers)
        return FakeKafka()

    monkeypatch.setattr(environment_module, "start_local_kafka", fake_start)
    settings = Settings.from_env().replace(broker_count=3, kafka_bootstrap_servers="")
    with environment_module.BenchEnvironment(settings) as env:
        assert env.broker_count == 3 and env.bootstrap_servers == FakeKafka.bootstrap_servers
    assert started == [3, "stopped"]


def test_iceberg_and_trino_sections_time_every_statement_of_each_round(tmp_path):
    from bench.query import QUERIES, time_rounds
    from framework.query.trino_engine import SEED_STATEMENTS

    settings = Settings.from_env()
    opts = options_from_args(build_parser().parse_args(["--quick", "--only", "trino,iceberg", "--out", str(tmp_path)]),
                             settings)
    assert opts.sections == ("iceberg", "trino")
    assert (opts.query.runs, opts.query.game_events, opts.query.consume_records) == (20, 5_000, 100_000)
    assert QUERIES[:5] == list(SEED_STATEMENTS) and "show tables" in QUERIES
    seen: list[str] = []
    times = time_rounds(seen.append, runs=2, warmup=1)
    assert seen == QUERIES * 3 and len(times) == 2 * len(QUERIES) and all(t >= 0 for t in times)
    with pytest.raises(SystemExit):  # argparse refuses it in one sentence (bounded option)
        build_parser().parse_args(["--query-runs", "0"])


def test_cpu_sampler_usage_gives_cores_over_the_publish_window_and_the_note_its_ceiling():
    from bench.simulate import CpuSampler, _cpu_limit_note

    sampler = CpuSampler(None)
    # (wall time, machine busy CPU s, broker CPU s, {pid: CPU s} of the benchmark's own processes)
    sampler.samples = [(0.0, 0.0, 0.0, {7: 0.0}), (1.0, 1.5, 0.2, {7: 0.9, 8: 0.1}), (3.0, 5.5, 0.6, {7: 2.9}),
                       (9.0, 99.0, 9.0, {7: 9.0})]
    usage = sampler.usage(1.0, 3.0, executor_cpu=1.6)
    assert usage["machine_cores"] == pytest.approx(2.0) and usage["broker_cores"] == pytest.approx(0.2)
    assert usage["spark_cores"] == pytest.approx(1.0)  # pid 8 ended inside the window: left out
    assert usage["executor_cores"] == pytest.approx(0.8)
    spark = {"1": {"cpu": {"machine_cores": 1.0, "broker_cores": 0.25, "spark_cores": 1.0}}, "2": {"cpu": usage}}
    note = _cpu_limit_note(spark)
    assert "used 1.25 cores" in note and "at most 1.60 x" in note and "other processes took 0.80 cores" in note


def test_the_simulate_reference_gets_records_of_the_full_size_key_value_and_position_headers():
    from bench.simulate import _record_bytes
    from framework.sources.simulation import encode_position

    position = encode_position(1, 1, 1, 0)
    assert len(str(position)) == 15
    # key, value, then "source-position" and "source-watermark" with a 15-digit position each
    assert _record_bytes(position, b"room-3", b"v" * 99) == (6 + 99 + 15 + 16 + 2 * 15, 99)
    assert _record_bytes(position, None, b"v") == (1 + 31 + 30, 1)
