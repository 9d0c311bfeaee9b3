"""Section ``simulate``: the shipped chat simulation published to Kafka, locally and from Spark executors.

Measured in one run, each into a fresh topic of ``partitions`` partitions:

1. **model alone**: the messages of every run simulated and encoded, nothing sent
   (the model's own ceiling: no publisher can be faster than this);
2. **reference**: Kafka's ``ProducerPerformance`` sending as many records of the
   messages' average size (acks=all, idempotent, the framework's batch.size/linger.ms);
3. **local simulation producer**: ``chat-sim`` (:class:`~apps.simulations.ChatSimProducer`)
   in this process with the client named in the figure (librdkafka when installed);
   records/s over its send window, like the tool's;
4. **Spark, 1 and 2 executors**: ``produce --spark`` of the same runs on a local
   standalone cluster of two one-core workers (:class:`~framework.local.spark_cluster.LocalSparkCluster`),
   the application capped at 1 then 2 cores (:mod:`bench.simjob`, its own process);
   messages/s over the publishing window (first task ready to last task done, so
   the Spark and Python start-up is left out).

Targets: local producer >= 0.5 x ProducerPerformance, 2 executors >= 1.6 x 1 executor.
When the model alone is slower than the target rate, the figure's note says that the
model's own cost, not Kafka, is the limit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.environment import BenchEnvironment
from bench.errors import BenchError
from bench.perftool import producer_props, run_producer_performance
from bench.producers import run_timed
from bench.report import BenchReport, Figure, ratio_at_least
from framework.log import get_logger

log = get_logger("bench")

ROOT = Path(__file__).resolve().parents[1]
PRODUCER_TARGET = 0.5
SCALE_TARGET = 1.6
REFERENCE = "kafka-producer-perf-test"


@dataclass(frozen=True)
class SimulateOptions:
    runs: int = 4
    timesteps: int = 300
    partitions: int = 4  # chat-sim's (ChatSimProducer.partitions): the reference topic gets as many
    executors: tuple[int, ...] = (1, 2)
    spark: bool = True
    job_timeout: float = 600.0


def run_simulate(env: BenchEnvironment, opts: SimulateOptions, report: BenchReport) -> None:
    """Measure the four rates above and add the figures to ``report``."""
    from apps.simulations import ChatModel, ChatSimProducer
    from bench.clients import confluent_available
    from framework.sources.simulation import encode_message

    if opts.partitions != ChatSimProducer.partitions:
        raise BenchError(f"The simulate section publishes chat-sim, which has {ChatSimProducer.partitions} "
                         f"partitions, not {opts.partitions}.")
    if opts.runs < max(opts.executors) or opts.partitions < max(opts.executors):
        raise BenchError(f"The simulate section needs at least {max(opts.executors)} runs and partitions to keep "
                         f"{max(opts.executors)} executors busy; got {opts.runs} runs, {opts.partitions} partitions.")
    model = ChatModel(runs=opts.runs, timesteps=opts.timesteps)
    list(ChatModel(runs=1, timesteps=2).simulate(1))  # import cadCAD (pandas) before any clock starts
    started = time.perf_counter()
    sizes = [len(encode_message(item)[1]) for _, item in model.simulate_all()]
    alone = len(sizes) / (time.perf_counter() - started)
    messages, size = len(sizes), max(1, round(sum(sizes) / len(sizes)))
    log.info("simulate: {} runs x {} timesteps = {:,} messages of {} B on average; model alone {:,.0f} messages/s",
             opts.runs, opts.timesteps, messages, size, alone)
    s = env.settings
    props = producer_props(env.bootstrap_servers, "all", s.producer_batch_size, s.producer_linger_ms,
                           s.producer_compression)
    ref = run_producer_performance(env.perf_classpath, env.new_topic("simref", opts.partitions), messages, props,
                                   record_size=size)
    log.info("simulate: reference ({}) {:,.0f} records/s", REFERENCE, ref.records_per_s)
    client = "confluent" if confluent_available() else "kafka-python"
    topic = env.new_topic("sim", create=False)  # the producer creates it with chat-sim's partition count
    local = run_timed(ChatSimProducer, s.replace(producer_client=client), client=client, runs=opts.runs,
                      timesteps=opts.timesteps, topic=topic)
    if local.sent != messages:
        raise BenchError(f"The local simulation producer sent {local.sent} messages, not {messages}.")
    rate = local.throughput.records_per_s
    log.info("simulate: local simulation producer ({}) {:,.0f} messages/s, p99 {:.0f} ms", client, rate,
             local.latency.p99_ms)
    limit = (f"; the model alone makes {alone:,.0f} messages/s, below {PRODUCER_TARGET} x ref: the model's own cost, "
             "not Kafka, is the limit" if alone < PRODUCER_TARGET * ref.records_per_s else
             f"; the model alone makes {alone:,.0f} messages/s")
    note = f"{messages:,} messages of {size} B ({opts.runs} runs x {opts.timesteps} timesteps), {opts.partitions} " \
           f"partitions, acks=all"
    report.figures.append(Figure("simulate", "model alone (simulate + encode, no Kafka)", "records/s", alone, None,
                                 "", "", None, "the ceiling of any publisher of this model"))
    report.figures.append(Figure("simulate", f"local simulation producer ({client} client)", "records/s", rate,
                                 ref.records_per_s, REFERENCE, f">= {PRODUCER_TARGET} x ref",
                                 ratio_at_least(rate, ref.records_per_s, PRODUCER_TARGET), note + limit))
    report.figures.append(Figure("simulate", f"local simulation producer ({client} client): p99 latency", "ms",
                                 local.latency.p99_ms, ref.p99_ms, REFERENCE))
    details = {"messages": messages, "record_size": size, "runs": opts.runs, "timesteps": opts.timesteps,
               "partitions": opts.partitions, "model_alone_per_s": alone, "reference": ref.to_dict(),
               "local": {**local.to_dict(), "client": client}, "spark": {}}
    report.details["simulate"] = details
    if opts.spark:
        spark_rates = _spark_runs(env, opts, client, messages, details)
        one, two = spark_rates.get(1), spark_rates.get(max(opts.executors))
        for k, value in sorted(spark_rates.items()):
            is_top = k == max(opts.executors) and k > 1
            report.figures.append(Figure(
                "simulate", f"Spark, {k} executor{'s' if k > 1 else ''} ({client} client per task)", "records/s",
                value, one if is_top else None, "1 executor" if is_top else "",
                f">= {SCALE_TARGET} x ref" if is_top else "",
                ratio_at_least(two, one, SCALE_TARGET) if is_top else None,
                f"{opts.runs} runs in {min(opts.runs, opts.partitions)} tasks on a standalone cluster of 2 one-core "
                f"workers; machine: {os.cpu_count()} cores shared with the broker" if is_top or k == 1 else ""))


def _spark_runs(env: BenchEnvironment, opts: SimulateOptions, client: str, messages: int, details: dict
                ) -> dict[int, float]:
    from framework.local.spark_cluster import LocalSparkCluster

    rates: dict[int, float] = {}
    workers = max(opts.executors)
    work_dir = env.path("sim-spark", "x").parent
    with LocalSparkCluster(workers=workers, cores_per_worker=1, memory="1g", work_dir=work_dir) as cluster:
        for k in opts.executors:
            topic = env.new_topic("simspark", create=False)
            env_vars = {key: value for key, value in os.environ.items() if not key.startswith("PIPELINE_")
                        or key == "PIPELINE_CACHE_DIR"}
            env_vars.update(PYTHONPATH=str(ROOT), PIPELINE_SPARK_MASTER=cluster.master_url,
                            PIPELINE_SPARK_DRIVER_HOST="127.0.0.1",
                            PIPELINE_KAFKA_BOOTSTRAP_SERVERS=env.bootstrap_servers,
                            PIPELINE_PRODUCER_CLIENT=client, PIPELINE_SPARK_EXECUTOR_MEMORY="512m",
                            PIPELINE_SPARK_EXECUTOR_CORES="1", PIPELINE_LOG_LEVEL="WARNING")
            cmd = [sys.executable, "-m", "bench.simjob", "--topic", topic, "--runs", str(opts.runs), "--timesteps",
                   str(opts.timesteps), "--executors", str(k)]
            log.info("simulate: Spark publish with {} executor(s) on {}", k, cluster.master_url)
            try:
                proc = subprocess.run(cmd, cwd=ROOT, env=env_vars, capture_output=True, text=True,
                                      timeout=opts.job_timeout, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                raise BenchError(f"The Spark publish with {k} executor(s) did not end within "
                                 f"{opts.job_timeout:.0f} s.") from None
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
                raise BenchError(f"The Spark publish with {k} executor(s) exited with code {proc.returncode}:\n{tail}")
            result = json.loads(lines[-1])
            if result["sent"] != messages:
                raise BenchError(f"The Spark publish with {k} executor(s) sent {result['sent']} messages, not "
                                 f"{messages}.")
            rates[k] = result["messages_per_second"]
            details["spark"][str(k)] = result
            log.info("simulate: Spark, {} executor(s) ({} distinct): {:,.0f} messages/s over {:.1f} s of publishing",
                     k, result["executors"], rates[k], result["publish_seconds"])
    return rates


__all__ = ["SimulateOptions", "run_simulate"]
