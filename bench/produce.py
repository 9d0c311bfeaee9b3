"""Sections ``produce`` and ``api``: our producer and the streaming API against their references.

Every repeat runs, in this order (interleaved, so machine noise hits all alike):

1. **reference**: Kafka's ``ProducerPerformance`` (same record count, the average
   size of our records, acks=all, idempotent, the same batch.size / linger.ms /
   compression and partition count), into a fresh topic;
2. **producer alone**: a :class:`~framework.producer.base.ProducerABC` subclass fed from
   memory (:class:`~bench.synthetic.MemoryNdjsonSession`: the API's wire
   lines, already built), sending to Kafka with the framework's client, once per
   client: kafka-python (the default), then librdkafka
   (``PIPELINE_PRODUCER_CLIENT=confluent``);
3. **full path**: the same producer streaming from the real API (``apps.api``, its
   own process) at ``delay=0``, once per client;
4. **API**: a plain client reading the same stream at ``delay=0`` (section ``api``).

Our records/s and MB/s count the send window (first ``send`` to the return of
the final flush, i.e. every acknowledgement), like the tool's (first send to
``close``). Latencies are send-to-acknowledgement, sampled on one record in
``sample``. Our records also carry a key (the ``id``) and the two resume
headers (about 40 bytes) that the tool's records do not have; MB/s counts values
only on both sides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.apiserver import ApiProcess, read_stream
from bench.clients import confluent_available
from bench.environment import BenchEnvironment
from bench.perftool import PerfResult, producer_props, run_producer_performance
from bench.producers import ProduceRun, forget, producer_class, run_timed
from bench.report import BenchReport, Figure, ratio_at_least
from bench.stats import Throughput, median
from bench.synthetic import MemoryNdjsonSession, SyntheticRecords
from framework.log import get_logger

log = get_logger("bench")

STREAM = "bench"
REFERENCE = "kafka-producer-perf-test"
PRODUCE_TARGET = 0.5
API_TARGET = 2.0
DEFAULT_CLIENT = "kafka-python"
CONFLUENT = "confluent"
# The label of each client's rows: the default client keeps the plain labels.
CLIENT_LABELS = {DEFAULT_CLIENT: "", CONFLUENT: ", confluent client (PIPELINE_PRODUCER_CLIENT=confluent)"}


@dataclass(frozen=True)
class ProduceOptions:
    records: int
    repeat: int
    partitions: int
    record_size: int | None = None
    sample: int = 8
    clients: tuple[str, ...] = (DEFAULT_CLIENT, CONFLUENT)  # the first one is the API's reference


@dataclass
class _Runs:
    reference: list[PerfResult] = field(default_factory=list)
    memory: dict[str, list[ProduceRun]] = field(default_factory=dict)  # per client
    full: dict[str, list[ProduceRun]] = field(default_factory=dict)
    api: list[Throughput] = field(default_factory=list)


def run_produce_and_api(env: BenchEnvironment, opts: ProduceOptions, report: BenchReport, *,
                        produce: bool = True, api: bool = True) -> None:
    """Measure what is asked (``produce`` and/or ``api``) and add the figures to ``report``."""
    records = SyntheticRecords(size=opts.record_size)
    data_dir = env.path("api-data", "x").parent
    avg_size = records.write_jsonl(data_dir / f"{STREAM}.json", opts.records)
    size = max(1, round(avg_size))
    log.info("produce: {:,} synthetic records of {:.1f} bytes on average in {}", opts.records, avg_size, data_dir)
    lines = records.wire_lines(opts.records) if produce else []
    clients = _clients(opts)
    runs = _Runs(memory={c: [] for c in clients}, full={c: [] for c in clients})
    s = env.settings
    props = producer_props(env.bootstrap_servers, "all", s.producer_batch_size, s.producer_linger_ms,
                           s.producer_compression)
    with ApiProcess(data_dir, delay=0.0) as server:
        url = f"{server.url}/stream_data_{STREAM}"
        for r in range(1, opts.repeat + 1):
            step = f"[{r}/{opts.repeat}]"
            if produce:
                topic = env.new_topic("ref", opts.partitions)
                ref = run_producer_performance(env.perf_classpath, topic, opts.records, props, record_size=size)
                runs.reference.append(ref)
                log.info("produce {} reference ({}): {:,.0f} records/s, avg {:.1f} ms, p99 {:.0f} ms",
                         step, REFERENCE, ref.records_per_s, ref.avg_latency_ms, ref.p99_ms)
                for client in clients:
                    mem = _producer_run(env, opts, "http://memory.invalid/stream_data_bench", client,
                                        session=MemoryNdjsonSession(lines))
                    runs.memory[client].append(mem)
                    _log_run(f"produce {step} producer alone (memory feed, {client})", mem)
            for client in clients if produce else clients[:1]:
                full = _producer_run(env, opts, url, client, delay=0.0)
                runs.full[client].append(full)
                _log_run(f"produce {step} full path (API -> producer -> Kafka, {client})", full)
            if api:
                served = read_stream(url, {"delay": 0})
                runs.api.append(served)
                log.info("api {}: {:,.0f} records/s ({:.1f} MB/s) to a plain client", step,
                         served.records_per_s, served.mb_per_s)
    if produce:
        _produce_figures(report, runs, size, opts)
    if api:
        _api_figures(report, runs)
    report.details["produce"] = {
        "records": opts.records, "record_size": avg_size, "partitions": opts.partitions, "repeat": opts.repeat,
        "producer_props": {k: v for k, v in props.items() if k != "bootstrap.servers"},
        "latency_sample": opts.sample,
        "reference": [x.to_dict() for x in runs.reference], "api": [x.to_dict() for x in runs.api],
        "clients": list(clients)}
    for client in clients:  # "memory"/"full_path" for the first client, "memory_confluent"/... for the others
        suffix = "" if client == clients[0] else "_" + client.replace("-", "_")
        report.details["produce"]["memory" + suffix] = [x.to_dict() for x in runs.memory[client]]
        report.details["produce"]["full_path" + suffix] = [x.to_dict() for x in runs.full[client]]


def _clients(opts: ProduceOptions) -> tuple[str, ...]:
    """The clients to measure: ``opts.clients`` without confluent when it cannot be imported."""
    clients = tuple(opts.clients) or (DEFAULT_CLIENT,)
    if CONFLUENT in clients and not confluent_available():
        log.warning("produce: confluent-kafka is not importable, so the confluent client is not measured "
                    "(`pip install -e .` installs it)")
        clients = tuple(c for c in clients if c != CONFLUENT) or (DEFAULT_CLIENT,)
    return clients


def _producer_run(env: BenchEnvironment, opts: ProduceOptions, endpoint: str, client: str,
                  **kwargs: Any) -> ProduceRun:
    cls = producer_class(env.new_topic("produce", create=False), endpoint, partitions=opts.partitions)
    try:
        run = run_timed(cls, env.settings.replace(producer_client=client), sample=opts.sample, client=client,
                        **kwargs)
    finally:
        forget(cls)
    if run.sent != opts.records:
        log.warning("The producer ({}) sent {} records, not {}", client, run.sent, opts.records)
    return run


def _log_run(what: str, run: ProduceRun) -> None:
    log.info("{}: {:,.0f} records/s, {:.2f} MB/s, avg {:.1f} ms, p99 {:.0f} ms", what,
             run.throughput.records_per_s, run.throughput.mb_per_s, run.latency.avg_ms, run.latency.p99_ms)


def _produce_figures(report: BenchReport, runs: _Runs, size: int, opts: ProduceOptions) -> None:
    ref = {
        "records/s": median(r.records_per_s for r in runs.reference),
        "MB/s": median(r.mb_per_s for r in runs.reference),
        "avg latency": median(r.avg_latency_ms for r in runs.reference),
        "p99 latency": median(r.p99_ms for r in runs.reference),
    }
    note = (f"{opts.records:,} records of {size} B, {opts.partitions} partitions, acks=all, median of "
            f"{len(runs.reference)}")
    groups = [(f"full path{CLIENT_LABELS.get(c, f', {c} client')}", runs.full[c]) for c in runs.full]
    groups += [(f"producer alone{CLIENT_LABELS.get(c, f', {c} client')}", runs.memory[c]) for c in runs.memory]
    for label, group in groups:
        if not group:
            continue
        ours = {
            "records/s": median(r.throughput.records_per_s for r in group),
            "MB/s": median(r.throughput.mb_per_s for r in group),
            "avg latency": median(r.latency.avg_ms for r in group),
            "p99 latency": median(r.latency.p99_ms for r in group),
        }
        for name, unit in (("records/s", "records/s"), ("MB/s", "MB/s"), ("avg latency", "ms"),
                           ("p99 latency", "ms")):
            target, met = "", None
            if label.startswith("full path") and name == "records/s":
                target = f">= {PRODUCE_TARGET} x ref"
                met = ratio_at_least(ours[name], ref[name], PRODUCE_TARGET)
            report.figures.append(Figure("produce", f"{label}: {name}", unit, _finite(ours[name]),
                                         _finite(ref[name]), REFERENCE, target, met,
                                         note if name == "records/s" else ""))


def _api_figures(report: BenchReport, runs: _Runs) -> None:
    api_rate = median(t.records_per_s for t in runs.api)
    # the fastest full-path producer of the run (either client): the one the API must keep up with
    rates = {client: median(r.throughput.records_per_s for r in full) for client, full in runs.full.items() if full}
    fastest = max(rates, key=lambda c: rates[c], default=None)
    producer_rate = rates[fastest] if fastest else float("nan")
    report.figures.append(Figure(
        "api", "records served at delay=0", "records/s", _finite(api_rate), _finite(producer_rate),
        f"full-path producer, {fastest}", f">= {API_TARGET} x ref", ratio_at_least(api_rate, producer_rate, API_TARGET),
        f"plain client, median of {len(runs.api)}"))
    report.figures.append(Figure(
        "api", "MB served at delay=0", "MB/s", _finite(median(t.mb_per_s for t in runs.api)), None, "", "", None,
        "wire bytes (with _position)"))


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None

