"""Section ``simulate``: the shipped chat simulation published to Kafka, locally and from Spark executors.

Measured in one run, each into a fresh topic of ``partitions`` partitions:

1. **model alone**: the messages of every run simulated and encoded, nothing sent
   (the model's own ceiling: no publisher can be faster than this);
2. **reference**: Kafka's ``ProducerPerformance`` sending as many records of the
   messages' average record size (key, value and the producer's two position headers, as
   Kafka counts a record's size, in values of that size: the tool sends no key or header;
   acks=all, idempotent, the framework's batch.size/linger.ms);
3. **local simulation producer**: ``chat-sim`` (:class:`~apps.simulations.ChatSimProducer`)
   in this process with the client named in the figure (librdkafka when installed), its
   model in a process of its own (``model_process=True``, as ``PIPELINE_SIMULATION_PROCESS=true``);
   records/s over its send window, like the tool's;
4. **Spark, 1 and 2 executors**: ``produce --spark`` of the same runs on a local
   standalone cluster of two one-core workers (:class:`~framework.local.spark_cluster.LocalSparkCluster`),
   the application capped at 1 then 2 cores (:mod:`bench.simjob`, its own process);
   messages/s over the publishing window (first task ready to last task done). The
   Spark and Python start-up is left out: :func:`~framework.producer.distributed.publish_on_spark`
   starts the publish job only when both executors are registered and their Python
   workers have imported the producer and cadCAD, and the figure's note gives the
   start skew between the executors' first tasks. With 4 runs each executor of two
   publishes two partitions one after the other, so publishing, not start-up, fills the
   window. The note also gives the CPU the machine, the broker and the executors' Python
   workers used during that window (from ``/proc``), which shows when the 2 cores, not
   Spark, are the limit.

Targets: local producer >= 0.5 x ProducerPerformance, 2 executors >= 1.6 x 1 executor.
When the model alone is slower than the target rate, the figure's note says that the
model's own cost, not Kafka, is the limit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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
    timesteps: int = 4000
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
    sizes = [_record_bytes(position, *encode_message(item)) for position, item in model.simulate_all()]
    alone = len(sizes) / (time.perf_counter() - started)
    messages = len(sizes)
    size, value_size = (max(1, round(sum(column) / messages)) for column in zip(*sizes, strict=True))
    log.info("simulate: {} runs x {} timesteps = {:,} messages, records of {} B on average (key, value of {} B, "
             "headers); model alone {:,.0f} messages/s", opts.runs, opts.timesteps, messages, size, value_size, alone)
    s = env.settings
    props = producer_props(env.bootstrap_servers, "all", s.producer_batch_size, s.producer_linger_ms,
                           s.producer_compression)
    ref = run_producer_performance(env.perf_classpath, env.new_topic("simref", opts.partitions), messages, props,
                                   record_size=size)
    log.info("simulate: reference ({}) {:,.0f} records/s", REFERENCE, ref.records_per_s)
    client = "confluent" if confluent_available() else "kafka-python"
    topic = env.new_topic("sim", create=False)  # the producer creates it with chat-sim's partition count
    cpu_started = _own_cpu()  # this process (all threads, librdkafka's too) and the model's: steadier than the rate
    local = run_timed(ChatSimProducer, s.replace(producer_client=client), client=client, runs=opts.runs,
                      timesteps=opts.timesteps, topic=topic, model_process=True)
    cpu_per_message = (_own_cpu() - cpu_started) / max(1, local.sent) * 1e6
    if local.sent != messages:
        raise BenchError(f"The local simulation producer sent {local.sent} messages, not {messages}.")
    rate = local.throughput.records_per_s
    log.info("simulate: local simulation producer ({}) {:,.0f} messages/s, p99 {:.0f} ms", client, rate,
             local.latency.p99_ms)
    limit = (f"; the model alone makes {alone:,.0f} messages/s, below {PRODUCER_TARGET} x ref: the model's own cost, "
             "not Kafka, is the limit" if alone < PRODUCER_TARGET * ref.records_per_s else
             f"; the model alone makes {alone:,.0f} messages/s")
    note = f"{messages:,} messages, records of {size} B (key + value of {value_size} B + the position headers; the " \
           f"reference's values are {size} B) ({opts.runs} runs x {opts.timesteps} timesteps), {opts.partitions} " \
           f"partitions, acks=all"
    report.figures.append(Figure("simulate", "model alone (simulate + encode, no Kafka)", "records/s", alone, None,
                                 "", "", None, "the ceiling of any publisher of this model"))
    report.figures.append(Figure("simulate", f"local simulation producer ({client} client)", "records/s", rate,
                                 ref.records_per_s, REFERENCE, f">= {PRODUCER_TARGET} x ref",
                                 ratio_at_least(rate, ref.records_per_s, PRODUCER_TARGET), note + limit))
    report.figures.append(Figure("simulate", f"local simulation producer ({client} client): p99 latency", "ms",
                                 local.latency.p99_ms, ref.p99_ms, REFERENCE))
    report.figures.append(Figure("simulate", f"local simulation producer ({client} client): CPU per message", "us",
                                 cpu_per_message, 1e6 / alone, "model alone", "", None,
                                 "CPU time of this process (all threads) and of the model's process over the run "
                                 "(their start-up included) / messages sent, against the model's own cost per "
                                 "message; the rest is the publishing path. Steadier than the rate on a shared "
                                 "machine"))
    details = {"messages": messages, "record_size": size, "value_size": value_size, "runs": opts.runs,
               "timesteps": opts.timesteps, "partitions": opts.partitions, "model_alone_per_s": alone,
               "reference": ref.to_dict(),
               "local": {**local.to_dict(), "client": client, "cpu_us_per_message": cpu_per_message}, "spark": {}}
    report.details["simulate"] = details
    if opts.spark:
        spark_rates = _spark_runs(env, opts, client, messages, details)
        one, two = spark_rates.get(1), spark_rates.get(max(opts.executors))
        for k, value in sorted(spark_rates.items()):
            is_top = k == max(opts.executors) and k > 1
            result = details["spark"][str(k)]
            report.figures.append(Figure(
                "simulate", f"Spark, {k} executor{'s' if k > 1 else ''} ({client} client per task)", "records/s",
                value, one if is_top else None, "1 executor" if is_top else "",
                f">= {SCALE_TARGET} x ref" if is_top else "",
                ratio_at_least(two, one, SCALE_TARGET) if is_top else None,
                f"{opts.runs} runs in {min(opts.runs, opts.partitions)} tasks on a standalone cluster of 2 one-core "
                f"workers; {_window_note(result)}" + (_cpu_limit_note(details["spark"]) if is_top else "")))


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
            sampler = CpuSampler(_broker_pid(env), {os.getpid(), *cluster.pids().values()})
            cmd = [sys.executable, "-m", "bench.simjob", "--topic", topic, "--runs", str(opts.runs), "--timesteps",
                   str(opts.timesteps), "--executors", str(k)]
            log.info("simulate: Spark publish with {} executor(s) on {}", k, cluster.master_url)
            try:
                with sampler:
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
            if result["registered_executors"] != k:
                raise BenchError(f"The Spark publish with {k} executor(s) ran on {result['registered_executors']} "
                                 f"registered executor(s); the cluster's 2 one-core workers should give it {k}.")
            tasks = result["tasks"]
            start, end = min(t["ready"] for t in tasks), max(t["ended"] for t in tasks)
            result["cpu"] = sampler.usage(start, end, sum(t["cpu_seconds"] for t in tasks))
            rates[k] = result["messages_per_second"]
            details["spark"][str(k)] = result
            log.info("simulate: Spark, {} executor(s) ({} distinct): {:,.0f} messages/s over {:.1f} s of publishing; "
                     "{}", k, result["executors"], rates[k], result["publish_seconds"], _window_note(result))
            for t in tasks:
                log.info("simulate:   task p{} runs {} in {}:{}: ready +{:.2f} s, ended +{:.2f} s, {:,} sent, "
                         "{:.1f} CPU s", t["partition"], t["runs"], t["host"], t["pid"], t["ready"] - start,
                         t["ended"] - start, t["sent"], t["cpu_seconds"])
    return rates


def _record_bytes(position: int, key: bytes | None, value: bytes) -> tuple[int, int]:
    """(bytes of the record as Kafka counts a record's size, bytes of its value) for one message.

    A record's size is its key, value and headers (Kafka's ``DefaultRecord.sizeInBytes``; the producer's
    ``record-size-avg`` metric); the producer adds two headers, the position and the acknowledged
    watermark (another position: as many digits). ``ProducerPerformance`` sends values only, so the
    reference gets values of the records' full size: the same bytes per record.
    """
    from framework.producer.resume import POSITION_HEADER, WATERMARK_HEADER

    digits = len(str(position))
    headers = len(POSITION_HEADER) + len(WATERMARK_HEADER) + 2 * digits
    return len(key or b"") + len(value) + headers, len(value)


def _own_cpu() -> float:
    """CPU seconds of this process and of its ended children (the model's process: ``resource``, POSIX)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _window_note(result: dict) -> str:
    cpu = result.get("cpu") or {}
    busy = ""
    if cpu.get("machine_cores") is not None:
        busy = (f"; machine {cpu['machine_cores']:.2f} of {os.cpu_count()} cores busy: broker "
                f"{cpu['broker_cores'] or 0.0:.2f}, Spark {cpu.get('spark_cores') or 0.0:.2f} (of it the executors' "
                f"Python {cpu['executor_cores']:.2f}), other processes {_other_cores(cpu):.2f}")
    return (f"{result['executors']} Python worker(s), start skew {result['start_skew']:.2f} s of "
            f"{result['publish_seconds']:.1f} s publishing{busy}"
            + (f"; {result['cold_tasks']} task(s) in a Python worker the warm-up missed (imports on the clock)"
               if result.get("cold_tasks") else ""))


def _other_cores(cpu: dict) -> float:
    """Cores the machine was busy with beyond the broker and Spark during the window (a :meth:`CpuSampler.usage`)."""
    return max(0.0, cpu["machine_cores"] - (cpu.get("spark_cores") or 0.0) - (cpu["broker_cores"] or 0.0))


def _cpu_limit_note(spark: dict) -> str:
    """The note's last sentence: the ceiling the machine's cores put on the executors' ratio.

    With 1 executor the benchmark's own processes (broker and Spark) used ``x`` cores; ``k``
    executors doing ``k`` times the work need about ``k * x`` (the broker's share grows with
    the rate), so on ``cores`` cores their ratio cannot exceed ``cores / x``, and less when
    other processes of the machine take cores during the window.
    """
    top = max(int(k) for k in spark)
    cpu, one = (spark.get(str(k), {}).get("cpu") or {} for k in (top, 1))
    cores = os.cpu_count() or 1
    if one.get("spark_cores") is None or cpu.get("machine_cores") is None:
        return ""
    own = one["spark_cores"] + (one["broker_cores"] or 0.0)
    others = _other_cores(cpu)
    return (f"; with 1 executor the broker and Spark used {own:.2f} cores, so on {cores} cores {top} executors can "
            f"reach at most {cores / own:.2f} x{' (below the target)' if cores / own < SCALE_TARGET else ''}, and "
            f"other processes took {others:.2f} cores while {top} executors published")


def _broker_pid(env: BenchEnvironment) -> int | None:
    """The local broker's process id (None for a cluster of several or an external Kafka)."""
    running_pid = getattr(env.broker, "running_pid", None)
    return running_pid() if callable(running_pid) else None


class CpuSampler:
    """Samples CPU time every ``interval`` s while in ``with``: the machine's busy time, the process ``pid``'s
    (the broker), and per process descending from the processes ``groups`` (this benchmark with its Spark
    driver, and the cluster's master and workers with their executors and Python workers), ``pid`` left out.

    Linux only (``/proc/stat``, ``/proc/<pid>/stat``, fields per proc(5)); elsewhere
    :meth:`usage` gives None values. Times are in seconds of CPU, samples stamped with ``time.time()``.
    """

    def __init__(self, pid: int | None, groups: Iterable[int] = (), interval: float = 0.1) -> None:
        self.pid, self.groups, self.interval = pid, set(groups), interval
        self.samples: list[tuple[float, float | None, float | None, dict[int, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.samples.append((time.time(), self._machine_busy(), self._process_cpu(), self._group_cpu()))
            if self._stop.wait(self.interval):
                self.samples.append((time.time(), self._machine_busy(), self._process_cpu(), self._group_cpu()))
                return

    def _group_cpu(self) -> dict[int, float]:
        """CPU seconds of every process descending from ``groups`` (the roots included), the broker left out."""
        if not self.groups:
            return {}
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            read = self._stat(stat)
            if read is not None:  # None: the process ended meanwhile
                pid = int(stat.parent.name)
                parent[pid], cpu[pid] = read
        out: dict[int, float] = {}
        for pid in cpu:
            node, seen = pid, 0
            while node > 1 and node not in self.groups and seen < 64:
                node, seen = parent.get(node, 0), seen + 1
            if node in self.groups and pid != self.pid:
                out[pid] = cpu[pid]
        return out

    def _machine_busy(self) -> float | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / self._tick  # user..steal; guest is already in user

    def _process_cpu(self) -> float | None:
        read = None if self.pid is None else self._stat(Path(f"/proc/{self.pid}/stat"))
        return None if read is None else read[1]

    def _stat(self, stat: Path) -> tuple[int, float] | None:
        """(parent pid, CPU seconds: utime + stime) of a ``/proc/<pid>/stat`` file; None when it cannot be read."""
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return int(fields[1]), (int(fields[11]) + int(fields[12])) / self._tick
        except (OSError, ValueError, IndexError):
            return None

    def usage(self, start: float, end: float, executor_cpu: float) -> dict[str, float | None]:
        """Cores busy on average over the wall-clock window ``start..end`` (the samples nearest inside it)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        seconds = end - start
        out: dict[str, float | None] = {"window_seconds": seconds, "machine_cores": None, "broker_cores": None,
                                        "spark_cores": None,
                                        "executor_cores": executor_cpu / seconds if seconds > 0 else None}
        if len(inside) < 2 or inside[-1][0] - inside[0][0] <= 0:
            return out
        (t0, m0, b0, g0), (t1, m1, b1, g1) = inside[0], inside[-1]
        if m0 is not None and m1 is not None:
            out["machine_cores"] = (m1 - m0) / (t1 - t0)
        if b0 is not None and b1 is not None:
            out["broker_cores"] = (b1 - b0) / (t1 - t0)
        if g1:  # processes alive at both ends (a Python worker reused for every task is)
            out["spark_cores"] = sum(g1[pid] - g0[pid] for pid in g1 if pid in g0) / (t1 - t0)
        return out


__all__ = ["CpuSampler", "SimulateOptions", "run_simulate"]
