"""Section ``sweep``: our producer over a grid of Kafka cluster and producer settings.

Dimensions: broker count x replication factor x ``min.insync.replicas`` x partitions x
batch.size x linger.ms x compression x acks. Combinations a cluster cannot have
(replication factor above the broker count, ``min.insync.replicas`` above the
replication factor) are left out. Points are measured broker count by broker
count: the benchmark's own Kafka serves the points of its size
(``PIPELINE_BROKER_COUNT``, default 1), and for another size a local cluster
(:class:`~framework.local.kafka_cluster.LocalKafkaCluster`, or one broker) is
started on free ports for those points and stopped after them; against a cluster
given by ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` only its own size can be measured.

Each point streams the same synthetic records (``--record-size``, fed from
memory at ``--rate`` records/s, 0 = as fast as possible) through a
:class:`~framework.producer.base.ProducerABC` into a fresh topic with that many
partitions, the kafka-python client configured as the point says; with
``reference`` on, Kafka's ``ProducerPerformance`` runs the same point right
after (same records count and size, same properties, same partitions).

``acks`` ``all`` keeps the framework's idempotent producer; ``1`` and ``0``
turn idempotence off, which voids ProducerABC's exactly-once guarantee: those
points are measured for comparison but never recommended unless asked
(:func:`recommend` with ``durable_only=False``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from bench.environment import BenchEnvironment, start_local_kafka
from bench.errors import BenchError
from bench.plot import PlotPoint, plot_sweep
from bench.perftool import PerfResult, producer_props, run_producer_performance
from bench.producers import ProduceRun, forget, producer_class, run_timed
from bench.report import BenchReport, Table, fmt, fmt_ratio
from bench.stats import ratio
from bench.synthetic import MemoryNdjsonSession, SyntheticRecords
from framework.log import get_logger

log = get_logger("bench")

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
ACKS = ("0", "1", "all")
_CODEC_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


@dataclass(frozen=True)
class SweepPoint:
    """One cluster and producer configuration."""

    partitions: int
    batch_size: int
    linger_ms: int
    compression: str
    acks: str
    brokers: int = 1
    replication_factor: int = 1
    min_insync_replicas: int = 1

    @property
    def label(self) -> str:
        """Short label for tables and plots, e.g. ``3br rf3 isr2 p3 b64k l20 none acks=all``."""
        size = f"{self.batch_size // 1024}k" if self.batch_size % 1024 == 0 else str(self.batch_size)
        return (f"{self.brokers}br rf{self.replication_factor} isr{self.min_insync_replicas} p{self.partitions} "
                f"b{size} l{self.linger_ms} {self.compression} acks={self.acks}")

    @property
    def durable(self) -> bool:
        """True when the point keeps the exactly-once guarantee (acks=all, idempotent)."""
        return self.acks == "all"

    @property
    def survives_a_broker_loss(self) -> bool:
        """acks=all with a replication factor and min.insync.replicas of at least 2: an acknowledged record
        is on two brokers, so losing one loses nothing."""
        return self.durable and self.replication_factor >= 2 and self.min_insync_replicas >= 2

    @property
    def valid(self) -> bool:
        return self.replication_factor <= self.brokers and self.min_insync_replicas <= self.replication_factor

    def topic_configs(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    def client_overrides(self) -> dict[str, Any]:
        """kafka-python settings of this point, applied over the framework's own."""
        return {"batch_size": self.batch_size, "linger_ms": self.linger_ms,
                "compression_type": None if self.compression == "none" else self.compression,
                "acks": "all" if self.acks == "all" else int(self.acks), "enable_idempotence": self.durable}


@dataclass(frozen=True)
class SweepGrid:
    """The values of every dimension; :meth:`points` is their product."""

    partitions: tuple[int, ...] = (1, 3)
    batch_size: tuple[int, ...] = (16384, 65536)
    linger_ms: tuple[int, ...] = (0, 20)
    compression: tuple[str, ...] = ("none", "gzip")
    acks: tuple[str, ...] = ("1", "all")
    brokers: tuple[int, ...] = (1,)
    replication_factor: tuple[int, ...] = (1,)
    min_insync_replicas: tuple[int, ...] = (1,)

    def points(self) -> list[SweepPoint]:
        """Every valid combination: brokers varying slowest, then replication factor, min ISR, partitions, ...,
        acks fastest."""
        return [p for p in (SweepPoint(part, b, lg, c, a, n, rf, isr) for n, rf, isr, part, b, lg, c, a in
                            itertools.product(self.brokers, self.replication_factor, self.min_insync_replicas,
                                              self.partitions, self.batch_size, self.linger_ms, self.compression,
                                              self.acks)) if p.valid]

    def check(self) -> None:
        """Raise :class:`BenchError` for a value the client or broker cannot use (before any I/O)."""
        for name, values in asdict(self).items():
            if not values:
                raise BenchError(f"--{name.replace('_', '-')} needs at least one value.")
            if len(set(values)) != len(values):
                raise BenchError(f"--{name.replace('_', '-')} lists a value twice: {', '.join(map(str, values))}.")
        for name in ("brokers", "replication_factor", "min_insync_replicas"):
            for v in getattr(self, name):
                if v < 1:
                    raise BenchError(f"--{name.replace('_', '-')} {v} is not valid; use 1 or more.")
        for n in self.brokers:
            if n > 9:
                raise BenchError(f"--brokers {n} is not valid; a local cluster has at most 9 brokers.")
        if not self.points():
            factors = ", ".join(map(str, self.replication_factor))
            raise BenchError(f"No sweep point is possible: every replication factor ({factors}) "
                             f"exceeds the broker counts ({', '.join(map(str, self.brokers))}) or every "
                             "min.insync.replicas exceeds the replication factors; lower them.")
        for p in self.partitions:
            if p < 1:
                raise BenchError(f"--partitions {p} is not valid; a topic has at least 1 partition.")
        for b in self.batch_size:
            if b < 1:
                raise BenchError(f"--batch-size {b} is not valid; use a number of bytes above 0 like 16384.")
        for linger in self.linger_ms:
            if linger < 0:
                raise BenchError(f"--linger-ms {linger} is not valid; use 0 or more milliseconds.")
        for a in self.acks:
            if a not in ACKS:
                raise BenchError(f"--acks {a!r} is not valid; use {', '.join(ACKS)}.")
        for c in self.compression:
            if c not in COMPRESSIONS:
                raise BenchError(f"--compression {c!r} is not valid; use {', '.join(COMPRESSIONS)}.")
            if not codec_available(c):
                raise BenchError(
                    f"--compression {c} needs the Python package {_CODEC_PACKAGES[c]} for kafka-python "
                    f"(`pip install {_CODEC_PACKAGES[c]}`); available here: {', '.join(available_codecs())}.")


QUICK_GRID = SweepGrid(partitions=(3,), batch_size=(65536,), linger_ms=(0,), compression=("none",),
                       acks=("1", "all"), brokers=(1, 3), replication_factor=(1, 3), min_insync_replicas=(1, 2))
FULL_GRID = SweepGrid(partitions=(1, 3), batch_size=(16384, 65536), linger_ms=(0, 20), compression=("none",),
                      acks=("1", "all"), brokers=(1, 3), replication_factor=(1, 3), min_insync_replicas=(1, 2))


def codec_available(name: str) -> bool:
    """True when kafka-python can compress with ``name`` here."""
    from kafka import codec

    checks = {"none": lambda: True, "gzip": codec.has_gzip, "snappy": codec.has_snappy,
              "lz4": codec.has_lz4, "zstd": codec.has_zstd}
    return bool(checks[name]())


def available_codecs() -> list[str]:
    return [c for c in COMPRESSIONS if codec_available(c)]


def parse_values(text: str, flag: str, kind: type = int) -> tuple:
    """``"1,3"`` -> ``(1, 3)`` for ``--flag``; :class:`BenchError` naming the flag on a bad item."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise BenchError(f"{flag} needs a comma-separated list like 1,3, not {text!r}.")
    values = []
    for item in items:
        if kind is int:
            try:
                values.append(int(item))
            except ValueError:
                raise BenchError(f"{flag} {item!r} is not a whole number; give a list like 16384,65536.") from None
        else:
            values.append(item.lower())
    return tuple(values)


# ----------------------------------------------------------------------------- results
@dataclass
class SweepResult:
    """What one point measured (``error`` set when it could not be measured)."""

    point: SweepPoint
    records_per_s: float = math.nan
    mb_per_s: float = math.nan
    avg_ms: float = math.nan
    p99_ms: float = math.nan
    reference: PerfResult | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and math.isfinite(self.records_per_s)

    @property
    def ratio(self) -> float | None:
        return ratio(self.records_per_s, self.reference.records_per_s if self.reference else None)

    def to_dict(self) -> dict:
        return {"point": asdict(self.point), "label": self.point.label, "records_per_s": self.records_per_s,
                "mb_per_s": self.mb_per_s, "avg_ms": self.avg_ms, "p99_ms": self.p99_ms,
                "reference": self.reference.to_dict() if self.reference else None, "ratio": self.ratio,
                "error": self.error}


@dataclass(frozen=True)
class Recommendation:
    result: SweepResult
    reason: str


def recommend(results: Sequence[SweepResult], latency_budget_ms: float | None = None,
              durable_only: bool = True) -> Recommendation | None:
    """The best point: the highest records/s among those within the p99 budget.

    Only acks=all points count unless ``durable_only`` is False. When none keeps
    the budget, the point with the lowest p99 is chosen (and the reason says
    so). Ties on throughput go to the lower p99. None when nothing was measured.
    """
    candidates = [r for r in results if r.ok and (r.point.durable or not durable_only)]
    if not candidates:
        return None
    scope = "acks=all (exactly-once) points" if durable_only else "points"
    if latency_budget_ms is None:
        best = max(candidates, key=lambda r: (r.records_per_s, -r.p99_ms))
        return Recommendation(best, f"highest records/s of the {len(candidates)} {scope}")
    within = [r for r in candidates if r.p99_ms <= latency_budget_ms]
    if within:
        best = max(within, key=lambda r: (r.records_per_s, -r.p99_ms))
        return Recommendation(best, f"highest records/s of the {len(within)} {scope} with p99 <= "
                                    f"{latency_budget_ms:g} ms")
    best = min(candidates, key=lambda r: (r.p99_ms, -r.records_per_s))
    return Recommendation(best, f"no {scope[:-1]} kept p99 <= {latency_budget_ms:g} ms; lowest p99")


# ----------------------------------------------------------------------------- running
@dataclass(frozen=True)
class SweepOptions:
    grid: SweepGrid
    records: int
    record_size: int | None = None
    rate: float = 0.0
    reference: bool = True
    latency_budget_ms: float | None = 250.0
    sample: int = 8
    plot: bool = True
    extra: dict = field(default_factory=dict)


def run_sweep(env: BenchEnvironment, opts: SweepOptions, report: BenchReport, plot_path: Any = None) -> None:
    """Measure every point of the grid and add the sweep table, recommendations and plot to ``report``."""
    opts.grid.check()
    synthetic = SyntheticRecords(size=opts.record_size)
    lines = synthetic.wire_lines(opts.records)
    size = round(sum(len(b) for b in synthetic.records(min(opts.records, 10_000))) / min(opts.records, 10_000))
    points = opts.grid.points()
    results: list[SweepResult] = []
    done = 0
    for brokers in dict.fromkeys(p.brokers for p in points):
        group = [p for p in points if p.brokers == brokers]
        try:
            kafka = _SweepKafka(env, brokers)
        except Exception as exc:  # noqa: BLE001 - the other broker counts are still measured
            log.error("sweep: no Kafka of {} broker(s): {}", brokers, exc)
            results += [SweepResult(p, error=f"{type(exc).__name__}: {exc}") for p in group]
            done += len(group)
            continue
        with kafka:
            for point in group:
                done += 1
                results.append(_measure(env, kafka, point, lines, size, opts, f"{done}/{len(points)}"))
    best = recommend(results, opts.latency_budget_ms)
    safe = recommend([r for r in results if r.point.survives_a_broker_loss], opts.latency_budget_ms)
    report.tables.append(sweep_table(results, best, size, opts, safe))
    report.details["sweep"] = {"records": opts.records, "record_size": size, "rate": opts.rate,
                               "latency_budget_ms": opts.latency_budget_ms,
                               "points": [r.to_dict() for r in results],
                               "recommendation": ({"label": best.result.point.label, "reason": best.reason,
                                                   **asdict(best.result.point)} if best else None),
                               "recommendation_surviving_a_broker_loss": (
                                   {"label": safe.result.point.label, "reason": safe.reason,
                                    **asdict(safe.result.point)} if safe else None)}
    ok = [r for r in results if r.ok]
    if opts.plot and plot_path is not None and ok:
        points = [PlotPoint(r.point.label, r.records_per_s, r.reference.records_per_s if r.reference else 0.0,
                            r.avg_ms, r.p99_ms) for r in ok]
        best_index = ok.index(best.result) if best is not None and best.result in ok else None
        plot_sweep(points, best_index, plot_path, title=f"Producer sweep: {opts.records:,} records of {size} B, "
                                                   f"rate {'unthrottled' if opts.rate <= 0 else f'{opts.rate:,.0f}/s'}")
        report.plots.append(plot_path.name)


def _measure(env: BenchEnvironment, kafka: "_SweepKafka", point: SweepPoint, lines: list[bytes], size: int,
             opts: SweepOptions, step: str) -> SweepResult:
    result = SweepResult(point)
    try:
        run = _ours(env, kafka, point, lines, opts)
        result.records_per_s, result.mb_per_s = run.throughput.records_per_s, run.throughput.mb_per_s
        result.avg_ms, result.p99_ms = run.latency.avg_ms, run.latency.p99_ms
        if opts.reference:
            props = producer_props(kafka.bootstrap_servers, point.acks, point.batch_size, point.linger_ms,
                                   point.compression)
            result.reference = run_producer_performance(
                env.perf_classpath, kafka.new_topic("sweepref", point), opts.records, props,
                record_size=size, throughput=int(opts.rate) if opts.rate > 0 else -1)
    except Exception as exc:  # noqa: BLE001 - one failed point must not lose the others
        result.error = f"{type(exc).__name__}: {exc}"
        log.error("sweep [{}] {}: {}", step, point.label, result.error)
    if result.ok:
        ref = f"; reference {result.reference.records_per_s:,.0f} records/s" if result.reference else ""
        log.info("sweep [{}] {}: {:,.0f} records/s, avg {:.1f} ms, p99 {:.0f} ms{}", step, point.label,
                 result.records_per_s, result.avg_ms, result.p99_ms, ref)
    return result


class _SweepKafka:
    """The Kafka of one broker count: the environment's own, or a local one started for these points."""

    def __init__(self, env: BenchEnvironment, brokers: int) -> None:
        from framework.admin import KafkaAdmin

        self.env = env
        self.started: Any = None
        if brokers == env.broker_count:
            self.bootstrap_servers = env.bootstrap_servers
            self.admin = env.admin
            self.own_admin = False
            return
        if env.broker is None:
            raise BenchError(f"The benchmark runs against the cluster at {env.bootstrap_servers} "
                             f"({env.broker_count} brokers); points with {brokers} broker(s) need a local Kafka "
                             "(unset PIPELINE_KAFKA_BOOTSTRAP_SERVERS) or --brokers "
                             f"{env.broker_count}.")
        self.started = start_local_kafka(env.settings, brokers, env.path(f"kafka-{brokers}", "x").parent)
        self.bootstrap_servers = self.started.bootstrap_servers
        self.admin = KafkaAdmin(env.settings, bootstrap_servers=self.bootstrap_servers)
        self.own_admin = True

    @property
    def settings(self) -> Any:
        return self.env.settings.replace(kafka_bootstrap_servers=self.bootstrap_servers)

    def new_topic(self, section: str, point: SweepPoint) -> str:
        name = self.env.new_topic(section, point.partitions, create=False)
        self.admin.create_topic(name, point.partitions, replication_factor=point.replication_factor,
                                configs=point.topic_configs())
        return name

    def __enter__(self) -> "_SweepKafka":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.own_admin:
            self.admin.close()
        if self.started is not None:
            log.info("sweep: stopping the local Kafka at {}", self.bootstrap_servers)
            self.started.stop()


def _ours(env: BenchEnvironment, kafka: _SweepKafka, point: SweepPoint, lines: list[bytes],
          opts: SweepOptions) -> ProduceRun:
    topic = kafka.new_topic("sweep", point)
    cls = producer_class(topic, "http://memory.invalid/stream_data_sweep", partitions=point.partitions)
    try:
        return run_timed(cls, kafka.settings, session=MemoryNdjsonSession(lines, rate=opts.rate),
                         client_overrides=point.client_overrides(), sample=opts.sample)
    finally:
        forget(cls)


def sweep_table(results: Sequence[SweepResult], best: Recommendation | None, size: int,
                opts: SweepOptions, safe: Recommendation | None = None) -> Table:
    """The sweep as a table, one line per point; the recommended one marked."""
    rows = []
    for i, r in enumerate(results, start=1):
        p = r.point
        mark = " **(recommended)**" if best is not None and r is best.result else ""
        ref = r.reference.records_per_s if r.reference else None
        rows.append([str(i), str(p.brokers), str(p.replication_factor), str(p.min_insync_replicas),
                     str(p.partitions), str(p.batch_size), str(p.linger_ms), p.compression, p.acks,
                     fmt(r.records_per_s, "records/s") + mark, fmt(r.mb_per_s, "MB/s"), fmt(r.avg_ms, "ms"),
                     fmt(r.p99_ms, "ms"), fmt(ref, "records/s"), fmt_ratio(r.ratio), r.error[:60]])
    rate = "as fast as possible" if opts.rate <= 0 else f"at {opts.rate:,.0f} records/s"
    notes = [f"{opts.records:,} synthetic records of {size} B per point, fed from memory {rate}; "
             "ours = ProducerABC with the kafka-python client, reference = ProducerPerformance with the same "
             "properties."]
    if best is not None:
        notes.append(f"Recommended: **{best.result.point.label}** ({best.reason}): "
                     f"{best.result.records_per_s:,.0f} records/s, p99 {best.result.p99_ms:,.0f} ms.")
    fastest = recommend(results, None)
    if fastest is not None and (best is None or fastest.result is not best.result):
        notes.append(f"Fastest acks=all (exactly-once) point, whatever its latency: **{fastest.result.point.label}**: "
                     f"{fastest.result.records_per_s:,.0f} records/s, p99 {fastest.result.p99_ms:,.0f} ms.")
    if safe is not None:
        notes.append(f"Fastest that also survives the loss of a broker (acks=all, replication >= 2, "
                     f"min.insync.replicas >= 2): **{safe.result.point.label}** ({safe.reason}): "
                     f"{safe.result.records_per_s:,.0f} records/s, p99 {safe.result.p99_ms:,.0f} ms.")
    return Table("Producer configuration sweep",
                 ["#", "brokers", "replication", "min.insync", "partitions", "batch.size", "linger.ms", "compression",
                  "acks", "records/s", "MB/s", "avg ms", "p99 ms", "ref records/s", "ours/ref", "error"],
                 rows, "rrrrrrrllrrrrrrl", notes)
