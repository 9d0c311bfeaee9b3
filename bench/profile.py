"""Section ``profile``: where the produce path's time goes, and what other designs would give.

All runs feed the same synthetic records from memory (no API), so only the
producer side is measured:

1. **framework alone**: ProducerABC with :class:`~bench.clients.NullProducer`
   (acknowledges at once) and in-memory fakes for the admin and the resume read:
   decode, transform, key, partition, resume bookkeeping, encode;
2. **kafka-python send() alone**: a loop of ``send()`` calls with the framework's
   client and the same key, partition and headers, then ``flush()``;
3. **ProducerABC + kafka-python**: the shipped producer; the CPU time of the main
   thread and of the client's I/O thread are reported per record;
4. a **cProfile** of (3), main thread, top functions by own time;
5. **N producer processes**, each a ProducerABC sending only the partitions
   ``p % N == shard`` of a 6-partition topic (a throughput prototype of a
   partition-sharded producer, see the report);
6. when ``confluent_kafka`` (librdkafka) is importable: its ``produce()`` loop
   alone, ProducerABC with :class:`~bench.clients.ConfluentProducer`
   behind it (memory feed; and the full path from the API), and N processes.
"""
from __future__ import annotations

import cProfile
import io
import multiprocessing
import pstats
import time
from dataclasses import dataclass
from typing import Any, Callable

from bench.apiserver import ApiProcess
from bench.clients import ConfluentProducer, NullProducer, confluent_available, framework_producer
from bench.environment import BenchEnvironment
from bench.producers import BenchProducer, forget, producer_class, run_timed
from bench.report import BenchReport, Table, fmt
from bench.synthetic import MemoryNdjsonSession, SyntheticRecords
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("bench")

SHARD_PARTITIONS = 6
ENDPOINT = "http://memory.invalid/stream_data_profile"


@dataclass(frozen=True)
class ProfileOptions:
    records: int
    processes: tuple[int, ...] = (1, 2, 3)
    top: int = 15


@dataclass
class _Row:
    what: str
    records_per_s: float
    note: str = ""

    @property
    def us_per_record(self) -> float:
        return 1e6 / self.records_per_s if self.records_per_s > 0 else float("nan")


def run_profile(env: BenchEnvironment, opts: ProfileOptions, report: BenchReport) -> None:
    """Run the measurements listed in the module docstring; add a table and details to ``report``."""
    lines = SyntheticRecords().wire_lines(opts.records)
    rows: list[_Row] = []
    details: dict[str, Any] = {"records": opts.records}

    null = _framework_alone(env.settings, lines)
    rows.append(_Row("ProducerABC, client replaced by a no-op (framework cost alone)", null,
                     "decode, transform, key, partition, resume bookkeeping, encode"))
    log.info("profile: framework alone {:,.0f} records/s ({:.1f} us/record)", null, 1e6 / null)

    raw = _raw_send_loop(env, lines)
    rows.append(_Row("kafka-python send() loop + flush, nothing else", raw["records_per_s"],
                     f"send() call {raw['send_us']:.1f} us/record; flush {raw['flush_s']:.2f} s"))
    details["kafka_python_loop"] = raw
    log.info("profile: kafka-python send loop {:,.0f} records/s (send() {:.1f} us)", raw["records_per_s"],
             raw["send_us"])

    full, cpu, top = _abc_kafka_python(env, lines, opts.top)
    rows.append(_Row("ProducerABC + kafka-python (shipped producer)", full,
                     f"CPU per record: main thread {cpu['main_us']:.1f} us, client I/O thread "
                     f"{cpu['other_us']:.1f} us"))
    details["abc_kafka_python"] = {"records_per_s": full, "cpu": cpu, "profile_top": top}
    log.info("profile: ProducerABC + kafka-python {:,.0f} records/s; CPU main {:.1f} us, I/O thread {:.1f} us",
             full, cpu["main_us"], cpu["other_us"])

    clients = [("kafka-python", "kafka")]
    if confluent_available():
        loop = _confluent_loop(env, lines)
        rows.append(_Row("confluent-kafka produce() loop + flush, nothing else", loop,
                         "librdkafka, the client PIPELINE_PRODUCER_CLIENT=confluent uses"))
        single = _abc_confluent(env, lines)
        rows.append(_Row("ProducerABC + confluent-kafka (adapter, same exactly-once contract)", single,
                         "framework.producer.confluent.ConfluentProducer (PIPELINE_PRODUCER_CLIENT=confluent)"))
        path = _full_path_confluent(env, opts.records)
        rows.append(_Row("full path: API -> ProducerABC + confluent-kafka -> Kafka", path,
                         "the API in its own process at delay=0, as in the produce section"))
        details["confluent"] = {"loop_records_per_s": loop, "abc_records_per_s": single,
                                "full_path_records_per_s": path}
        log.info("profile: confluent-kafka loop {:,.0f} records/s; ProducerABC + confluent {:,.0f} records/s; "
                 "full path {:,.0f} records/s", loop, single, path)
        clients.append(("confluent-kafka", "confluent"))
    else:
        rows.append(_Row("confluent-kafka", float("nan"), "not installed: `pip install confluent-kafka` to measure"))

    for client_name, client in clients:
        for n in opts.processes:
            rate, per = _sharded(env, opts.records, n, client)
            rows.append(_Row(f"{n} ProducerABC process(es) + {client_name}, partition-sharded", rate,
                             f"{SHARD_PARTITIONS} partitions; per process: " + ", ".join(f"{p:,.0f}" for p in per)))
            details.setdefault("sharded", []).append({"client": client_name, "processes": n,
                                                      "records_per_s": rate, "per_process": per})
            log.info("profile: {} process(es) + {}: {:,.0f} records/s", n, client_name, rate)

    report.tables.append(Table(
        "Produce path profile (memory feed, acks=all)", ["measurement", "records/s", "us/record", "note"],
        [[r.what, fmt(r.records_per_s, "records/s"), fmt(r.us_per_record, "us"), r.note] for r in rows], "lrrl",
        [f"{opts.records:,} synthetic records of about 56 B per run; us/record = 1e6 / records/s.",
         "Top of the cProfile of ProducerABC + kafka-python (main thread, own time): "
         + "; ".join(f"{t['function']} {t['share']:.0f} %" for t in top[:8])]))
    details["rows"] = [{"what": r.what, "records_per_s": r.records_per_s, "us_per_record": r.us_per_record,
                        "note": r.note} for r in rows]
    report.details["profile"] = details


# ----------------------------------------------------------------------------- single measurements
def _framework_alone(settings: Settings, lines: list[bytes]) -> float:
    from framework.testing.producer import InMemoryKafka

    kafka = InMemoryKafka()
    clients = kafka.clients()
    clients.pop("producer_factory")
    cls = producer_class("profile-null", ENDPOINT)
    try:
        run = run_timed(cls, settings, session=MemoryNdjsonSession(lines), client_factory=NullProducer, **clients)
    finally:
        forget(cls)
    return run.throughput.records_per_s


def _raw_send_loop(env: BenchEnvironment, lines: list[bytes]) -> dict[str, float]:
    import orjson

    topic = env.new_topic("profile", 3)
    values = [orjson.dumps({k: v for k, v in orjson.loads(line).items() if k != "_position"}) for line in lines]
    keys = [str(orjson.loads(v)["id"]).encode() for v in values]
    producer = framework_producer(env.settings, "profile-raw")
    try:
        producer.send(topic, value=values[0], partition=0).get(30)  # metadata and connection first
        started = time.perf_counter()
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=keys[i], partition=i % 3,
                          headers=[("source-position", b"%d" % i), ("source-watermark", b"%d" % (i - 1))])
        sent = time.perf_counter()
        producer.flush(120)
        done = time.perf_counter()
    finally:
        producer.close(10)
    return {"records_per_s": len(values) / (done - started), "send_us": 1e6 * (sent - started) / len(values),
            "flush_s": done - sent}


def _abc_kafka_python(env: BenchEnvironment, lines: list[bytes], top: int) -> tuple[float, dict, list[dict]]:
    """Run the shipped producer twice: once for CPU split and rate, once under cProfile."""
    cls = producer_class(env.new_topic("profile", create=False), ENDPOINT, partitions=3)
    try:
        cpu_main0, cpu_all0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        run = run_timed(cls, env.settings, session=MemoryNdjsonSession(lines))
        cpu_main, cpu_all = time.thread_time() - cpu_main0, time.process_time() - cpu_all0
        wall = time.perf_counter() - wall0
    finally:
        forget(cls)
    n = max(run.sent, 1)
    cpu = {"main_us": 1e6 * cpu_main / n, "other_us": 1e6 * (cpu_all - cpu_main) / n,
           "wall_us": 1e6 * wall / n, "cpu_share_of_wall": cpu_all / wall if wall else float("nan")}
    cls = producer_class(env.new_topic("profile", create=False), ENDPOINT, partitions=3)
    profiler = cProfile.Profile()
    try:
        profiler.enable()
        run_timed(cls, env.settings, session=MemoryNdjsonSession(lines))
        profiler.disable()
    finally:
        forget(cls)
    return run.throughput.records_per_s, cpu, _top_functions(profiler, top)


def _top_functions(profiler: cProfile.Profile, top: int) -> list[dict]:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    out = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in ranked:
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        out.append({"function": f"{short}:{line}({name})" if line else name, "calls": calls,
                    "own_s": tottime, "cumulative_s": cumtime, "share": 100.0 * tottime / total})
    return out


def _confluent_loop(env: BenchEnvironment, lines: list[bytes]) -> float:
    import orjson

    topic = env.new_topic("profile", 3)
    values = [orjson.dumps({k: v for k, v in orjson.loads(line).items() if k != "_position"}) for line in lines]
    producer = ConfluentProducer(env.settings)
    try:
        producer.send(topic, value=values[0], partition=0)
        producer.flush(30)  # metadata and connection first
        started = time.perf_counter()
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=b"%d" % (i % 24 + 1), partition=i % 3,
                          headers=[("source-position", b"%d" % i), ("source-watermark", b"%d" % (i - 1))])
        producer.flush(120)
        return len(values) / (time.perf_counter() - started)
    finally:
        producer.close(10)


def _abc_confluent(env: BenchEnvironment, lines: list[bytes]) -> float:
    cls = producer_class(env.new_topic("profile", create=False), ENDPOINT, partitions=3)
    try:
        run = run_timed(cls, env.settings, session=MemoryNdjsonSession(lines),
                        client_factory=lambda: ConfluentProducer(env.settings))
    finally:
        forget(cls)
    return run.throughput.records_per_s


def _full_path_confluent(env: BenchEnvironment, records: int) -> float:
    data_dir = env.path("profile-api", "x").parent
    SyntheticRecords().write_jsonl(data_dir / "profile.json", records)
    with ApiProcess(data_dir, delay=0.0) as server:
        cls = producer_class(env.new_topic("profile", create=False), f"{server.url}/stream_data_profile", partitions=3)
        try:
            run = run_timed(cls, env.settings, client_factory=lambda: ConfluentProducer(env.settings), delay=0.0)
        finally:
            forget(cls)
    return run.throughput.records_per_s


# ----------------------------------------------------------------------------- sharded processes
def _sharded(env: BenchEnvironment, records: int, processes: int, client: str) -> tuple[float, list[float]]:
    """Aggregate records/s of ``processes`` shard processes over one 6-partition topic."""
    topic = env.new_topic("shard", SHARD_PARTITIONS)
    env.admin.create_topic(f"{topic}.dlq", 1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(processes)
    children = [ctx.Process(target=_shard_main,
                            args=(env.settings, topic, records, shard, processes, client, queue, barrier),
                            name=f"bench-shard-{shard}") for shard in range(processes)]
    for child in children:
        child.start()
    results = []
    try:
        for _ in children:
            results.append(queue.get(timeout=600))
    finally:
        for child in children:
            child.join(60)
            if child.is_alive():
                child.terminate()
                child.join(10)
    errors = [r["error"] for r in results if r.get("error")]
    if errors:
        raise RuntimeError(f"a shard process failed: {errors[0]}")
    total = sum(r["sent"] for r in results)
    window = max(r["end"] for r in results) - min(r["start"] for r in results)
    return total / window, [r["sent"] / (r["end"] - r["start"]) for r in results]


class _GatedSession(MemoryNdjsonSession):
    """Waits on a barrier before the first answer: every shard has read Kafka's state before any sends."""

    def __init__(self, lines: list[bytes], barrier: Any) -> None:
        super().__init__(lines)
        self.barrier = barrier

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.barrier is not None:
            self.barrier.wait(120)
            self.barrier = None
        return super().get(*args, **kwargs)


def _shard_main(settings: Settings, topic: str, records: int, shard: int, shards: int, client: str,
                queue: Any, barrier: Any) -> None:
    """Child process: send the records of partitions ``p % shards == shard``; put a result dict on ``queue``."""
    try:
        lines = SyntheticRecords().wire_lines(records)
        cls: type[BenchProducer] = producer_class(topic, ENDPOINT, partitions=SHARD_PARTITIONS)
        cls.shard, cls.shards = shard, shards
        factory: Callable[[], Any] | None = (lambda: ConfluentProducer(settings)) if client == "confluent" else None
        run = run_timed(cls, settings, session=_GatedSession(lines, barrier), client_factory=factory)
        start, end = run.extra["window_wall"]  # the send window on the wall clock (comparable between processes)
        queue.put({"sent": run.sent, "start": start, "end": end})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}", "sent": 0, "start": 0.0, "end": 0.0})
