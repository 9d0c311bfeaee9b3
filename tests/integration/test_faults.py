"""Fault tests of the whole pipeline: the real commands as subprocesses, a crash in the middle, exact Parquet.

Every scenario runs ``cmd/api_cmd.py``, ``cmd/produce_cmd.py --all`` and
``cmd/consume_cmd.py parquet`` as subprocesses configured only through
``PIPELINE_*`` variables, over a small generated dataset (3,240 metrics and
270 work orders), injects one fault, and checks at the end that the Parquet
tables hold exactly the source records: the multiset of (id, time, val) and of
(time, product, production) equals the source's, one row per Kafka record,
nothing quarantined.

1. the producer is SIGKILLed mid-stream and restarted;
2. the consumer is SIGKILLed in the middle of a bounded run (an uncommitted
   micro-batch in flight) and restarted;
3. one broker of a three-broker cluster (replication factor 3,
   min.insync.replicas 2, acks=all) that leads partitions is SIGKILLed while
   the producer and a continuous consumer run, then brought back;
4. the API is stopped (SIGTERM) mid-stream and restarted on the same port; the
   producer reconnects and resumes.

The shipped producers and consumer use the fixed topics ``metrics`` and
``workorder``, so each scenario gets a Kafka of its own.
"""
from __future__ import annotations

import contextlib
import re
import signal
import time
from pathlib import Path

import pytest

from framework.admin import KafkaAdmin
from framework.local.kafka_broker import free_port
from framework.local.kafka_cluster import LocalKafkaCluster
from framework.settings import Settings
from framework.testing import running_local_broker
from tests.integration.pipeline_procs import (Pipeline, assert_tables_hold_exactly, checkpoint_logs, generate_data,
                                              published_batches, safe_topic_counts, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PRODUCE_TIMEOUT = 120.0
CONSUME_TIMEOUT = 300.0
CONSUMER_NAME = "parquet"
TOPICS = ("metrics", "workorder")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    data_dir = tmp_path_factory.mktemp("fault-data")
    return data_dir, generate_data(data_dir)


@pytest.fixture
def own_broker(tmp_path: Path):
    """A Kafka broker of this test's own (the shipped topics have fixed names)."""
    with running_local_broker(tmp_path / "kafka") as broker:
        yield broker


def _totals(source: dict[str, list[dict]]) -> dict[str, int]:
    return {table: len(records) for table, records in source.items()}


def _run_to_completion(run: Pipeline, proc, timeout: float, what: str) -> str:
    """Wait for a command that must succeed; its log."""
    code = proc.wait(timeout)
    assert code == 0, f"{what} exited with {code}\n{run.diagnostics()}"
    return proc.text()


def _finish_bounded(run: Pipeline, source: dict[str, list[dict]], *args: str) -> None:
    """A bounded consumer run to the end, then the exact comparison with the source."""
    consumer = run.consumer("--bounded", *args)
    log = _run_to_completion(run, consumer, CONSUME_TIMEOUT, "the bounded consumer")
    run.mark("bounded consumer done")
    assert "(bounded) finished after" in log, consumer.tail()
    assert_tables_hold_exactly(run.output_dir, source, run.report())


@pytest.fixture
def pipeline_runs():
    """Pipelines a test creates; on failure their logs are printed, and every process is stopped."""
    runs: list[Pipeline] = []
    yield runs
    for run in runs:
        print(run.report())
        run.cleanup()


@contextlib.contextmanager
def _diagnose_on_failure(runs: list[Pipeline]):
    """On any failure inside, print the end of every process's log (pytest shows it with the failure)."""
    try:
        yield
    except BaseException:
        for run in runs:
            print(run.diagnostics())
        raise


def _mid_stream(run: Pipeline, metrics: int = 100, workorder: int = 30) -> dict[str, int] | None:
    """The topic counts once both topics hold at least this many records, else None (for polling)."""
    counts = safe_topic_counts(run.bootstrap_servers)
    return counts if counts["metrics"] >= metrics and counts["workorder"] >= workorder else None


# ---------------------------------------------------------------- 1. producer crash
@pytest.mark.timeout(360)
def test_producer_sigkill_mid_stream_then_restart_gives_exact_tables(dataset, own_broker, tmp_path, pipeline_runs):
    data_dir, source = dataset
    totals = _totals(source)
    run = Pipeline(tmp_path, own_broker.bootstrap_servers, data_dir)
    pipeline_runs.append(run)
    with _diagnose_on_failure(pipeline_runs):
        run.api("--delay", "0.02")  # metrics take 65 s, work orders 5 s: both are mid-stream at the kill
        producer = run.producer()
        run.mark("producing")
        wait_until(lambda: _mid_stream(run), 60, "both topics to be mid-stream", running=[producer])
        assert producer.kill() == -signal.SIGKILL
        run.mark("producer killed")
        after_kill = run.counts()
        print(f"records in Kafka after the SIGKILL: {after_kill} of {totals}")
        assert all(0 < after_kill[t] < totals[t] for t in totals), (after_kill, totals)

        restarted = run.producer("--delay", "0")
        log = _run_to_completion(run, restarted, PRODUCE_TIMEOUT, "the restarted producer")
        run.mark("producer restarted and done")
        assert run.counts() == totals, f"Kafka holds {run.counts()}, the source {totals}\n{restarted.tail()}"
        for table, total in totals.items():  # it resumed: sent only what was missing, not the whole stream again
            sent = int(re.search(rf"^{table}: (\d+) sent to {table},", log, re.M).group(1))
            assert 0 < sent <= total - after_kill[table], (table, sent, after_kill, restarted.tail())

        _finish_bounded(run, source)


# ---------------------------------------------------------------- 2. consumer crash
@pytest.mark.timeout(360)
def test_consumer_sigkill_mid_batch_then_restart_gives_exact_tables(dataset, own_broker, tmp_path, pipeline_runs):
    data_dir, source = dataset
    totals = _totals(source)
    run = Pipeline(tmp_path, own_broker.bootstrap_servers, data_dir)
    pipeline_runs.append(run)
    per_batch = "300"  # metrics: 11 micro-batches
    with _diagnose_on_failure(pipeline_runs):
        run.api("--delay", "0")
        _run_to_completion(run, run.producer(), PRODUCE_TIMEOUT, "the producer")
        assert run.counts() == totals
        run.mark("produced")

        consumer = run.consumer("--bounded", "--max-offsets-per-trigger", per_batch)
        wait_until(lambda: published_batches(run.output_dir / "metrics"), 240,
                   "the first metrics batch file", running=[consumer], interval=0.05)
        assert consumer.kill() == -signal.SIGKILL
        run.mark("consumer killed")
        offsets, commits = checkpoint_logs(run.checkpoint_dir, CONSUMER_NAME, "metrics")
        files = published_batches(run.output_dir / "metrics")
        print(f"at the SIGKILL: metrics batch files {files}, offset log {offsets}, commit log {commits}, "
              f"{run.rows('metrics')} of {totals['metrics']} rows")
        assert run.rows("metrics") < totals["metrics"], "the consumer had already finished: no crash was tested"
        # a micro-batch was planned (in the offset log) and not committed: it is replayed on restart
        assert offsets and max(offsets) > max(commits, default=-1), (offsets, commits)

        _finish_bounded(run, source, "--max-offsets-per-trigger", per_batch)
        assert len(published_batches(run.output_dir / "metrics")) >= 11


# ---------------------------------------------------------------- 3. broker crash
@pytest.mark.timeout(420)
def test_broker_sigkill_in_three_broker_cluster_while_producing_and_consuming_gives_exact_tables(
        dataset, tmp_path, pipeline_runs):
    data_dir, source = dataset
    totals = _totals(source)
    cluster = LocalKafkaCluster(state_dir=tmp_path / "kafka-cluster", ports=[free_port() for _ in range(3)],
                                controller_ports=[free_port() for _ in range(3)],
                                cache_dir=Path(Settings.from_env().cache_dir))
    try:
        cluster.start()
        run = Pipeline(tmp_path, cluster.bootstrap_servers, data_dir, producer_retries=8,
                       producer_retry_backoff=0.5, trigger_seconds=1, max_offsets_per_trigger=500)
        pipeline_runs.append(run)
        run.mark("cluster up")
        with _diagnose_on_failure(pipeline_runs):
            # The topics as the producer would create them (3 partitions, replication factor min(3, brokers)),
            # created first so that the continuous consumer is up before production starts.
            with KafkaAdmin(Settings(), bootstrap_servers=cluster.bootstrap_servers) as admin:
                for topic in TOPICS:
                    admin.create_topic(topic, partitions=3)
            consumer = run.consumer()  # continuous, a micro-batch every second
            # its first (empty) micro-batches are committed: Spark is warm before production starts
            wait_until(lambda: all(checkpoint_logs(run.checkpoint_dir, CONSUMER_NAME, t)[1] for t in TOPICS), 180,
                       "the continuous consumer's first micro-batches", running=[consumer])
            run.mark("consumer running")
            run.api("--delay", "0.01")  # metrics take about 32 s
            producer = run.producer()
            wait_until(lambda: safe_topic_counts(run.bootstrap_servers)["metrics"] >= 800, 60,
                       "800 metrics records produced", running=[producer, consumer])
            run.mark("producing and consuming")

            with KafkaAdmin(Settings(), bootstrap_servers=cluster.bootstrap_servers) as admin:
                topics = {t: admin.describe_topic(t) for t in TOPICS}
            for name, info in topics.items():
                assert info.replication_factor == 3, (name, info)
                assert all(len(p.isr) == 3 for p in info.partitions), (name, info)
                assert "min.insync.replicas" not in info.configs, info.configs  # the brokers' default applies
            for node in cluster.nodes:
                assert "min.insync.replicas=2" in node.config_file.read_text().splitlines(), node.config_file
            victim = topics["metrics"].partitions[0].leader
            led = [p.partition for p in topics["metrics"].partitions if p.leader == victim]
            before = run.counts()
            cluster.kill_node(victim)
            run.mark(f"node {victim} killed (leader of metrics partitions {led})")
            print(f"killed node {victim}, leader of metrics partitions {led}; Kafka held {before}, Parquet "
                  f"{run.rows('metrics')} metrics rows")

            # acks=all keeps succeeding on the two in-sync replicas left
            wait_until(lambda: safe_topic_counts(run.bootstrap_servers)["metrics"] >= before["metrics"] + 300, 90,
                       f"production to go on while node {victim} is down", running=[producer, consumer])
            run.mark("production went on")
            # the victim leads nothing and is out of every in-sync replica set: two replicas took every write
            wait_until(lambda: _every_partition(cluster.bootstrap_servers,
                                                lambda p: p.leader != victim and victim not in p.isr), 60,
                       f"node {victim} to leave the leaders and in-sync replicas", running=[producer, consumer])
            run.mark(f"node {victim} fenced")
            # the continuous consumer commits a micro-batch planned after the failover (read from the new leaders)
            planned = max(checkpoint_logs(run.checkpoint_dir, CONSUMER_NAME, "metrics")[0])
            wait_until(lambda: max(checkpoint_logs(run.checkpoint_dir, CONSUMER_NAME, "metrics")[1]) > planned, 180,
                       f"a metrics micro-batch planned after the failover (> {planned}) to be committed",
                       running=[consumer])
            run.mark("consumer read from the new leaders")
            print(f"while node {victim} was down: Kafka held {run.counts()}, Parquet {run.rows('metrics')} "
                  f"metrics rows, committed metrics batches "
                  f"{checkpoint_logs(run.checkpoint_dir, CONSUMER_NAME, 'metrics')[1]}, producer running: "
                  f"{not producer.exited()}")

            cluster.start_node(victim)
            run.mark(f"node {victim} restarted")
            rows_at_restart = run.rows("metrics")
            wait_until(lambda: _every_partition(cluster.bootstrap_servers, lambda p: len(p.isr) == 3), 90,
                       f"node {victim} to rejoin the in-sync replicas", running=[consumer])
            run.mark("in sync again")

            log = _run_to_completion(run, producer, PRODUCE_TIMEOUT, "the producer")
            run.mark("producer done")
            print("producer:", *[line for line in log.splitlines() if " sent to " in line], sep="\n  ")
            assert run.counts() == totals, f"Kafka holds {run.counts()}, the source {totals}\n{producer.tail()}"

            # the continuous consumer catches up with everything (it may have done so while the node was down)
            wait_until(lambda: run.rows("metrics") >= totals["metrics"], 120,  # exactness: _finish_bounded
                       f"the continuous consumer to write all {totals['metrics']} metrics rows (it had "
                       f"{rows_at_restart} when node {victim} returned)", running=[consumer])
            run.mark("consumer progressed")
            assert consumer.terminate(120) == 0, consumer.tail()
            run.mark("continuous consumer stopped")
            assert "(continuous) stopped after" in consumer.text(), consumer.tail()

            _finish_bounded(run, source)
    finally:
        for run in pipeline_runs:
            run.cleanup()
        cluster.stop(timeout=15)  # a node may hang in controlled shutdown once the quorum is gone


def _every_partition(bootstrap_servers: str, condition) -> bool:
    """True when ``condition(PartitionInfo)`` holds for every partition of the two topics (False if no answer)."""
    try:
        with KafkaAdmin(Settings(), bootstrap_servers=bootstrap_servers, timeout=10) as admin:
            partitions = [p for t in TOPICS for p in admin.describe_topic(t).partitions]
    except Exception:  # noqa: BLE001 - polling: not answering now counts as "not yet"
        return False
    return bool(partitions) and all(condition(p) for p in partitions)


# ---------------------------------------------------------------- 4. API restart
@pytest.mark.timeout(360)
def test_api_stopped_mid_stream_and_restarted_on_the_same_port_gives_exact_tables(dataset, own_broker, tmp_path,
                                                                                   pipeline_runs):
    data_dir, source = dataset
    totals = _totals(source)
    run = Pipeline(tmp_path, own_broker.bootstrap_servers, data_dir, producer_retries=8,
                   producer_retry_backoff=0.5)
    pipeline_runs.append(run)
    with _diagnose_on_failure(pipeline_runs):
        api = run.api("--delay", "0.02")
        producer = run.producer()
        wait_until(lambda: _mid_stream(run), 60, "both topics to be mid-stream", running=[producer, api])
        assert api.terminate(30) == 0, api.tail()
        run.mark("API stopped")
        stopped_at = run.counts()
        print(f"records in Kafka when the API stopped: {stopped_at} of {totals}")
        assert all(stopped_at[t] < totals[t] for t in totals), (stopped_at, totals)

        time.sleep(3.0)  # a few seconds of downtime: the producer retries against a closed port
        assert not producer.exited(), f"the producer gave up during the API's downtime\n{producer.tail()}"
        run.api("--delay", "0")  # same port (PIPELINE_API_PORT), no pacing
        run.mark("API restarted")

        log = _run_to_completion(run, producer, PRODUCE_TIMEOUT, "the producer")
        run.mark("producer done")
        assert "reconnecting from position" in log, producer.tail()
        for table, total in totals.items():  # one producer session: every record sent once, none skipped
            assert f"{table}: {total} sent to {table}, 0 already there" in log, producer.tail()
        assert run.counts() == totals, f"Kafka holds {run.counts()}, the source {totals}\n{producer.tail()}"

        _finish_bounded(run, source)
