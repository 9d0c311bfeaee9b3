"""Generate the demo datasets the streaming API replays: machine metrics and work orders.

Run ``python data_source/generate.py`` (from the project root) to rewrite the
shipped files in ``data_source/``; ``--help`` lists the scale options, e.g.
``python data_source/generate.py /tmp/big --records 2000000`` for a benchmark.

What is written to the output directory (all UTF-8, ``\\n`` line ends):

- ``metrics.json``: JSON Lines, one machine reading per line,
  ``{"id": <parameter id>, "time": "<ISO-8601 UTC>", "val": <float>}``.
  Every parameter is sampled once per ``--interval`` (with a fixed sensor
  phase and a few milliseconds of jitter).
- ``workorder.json``: JSON Lines, one line per ``--period`` of production,
  ``{"time": "<ISO-8601 UTC>", "product": <product id>, "production": <units>}``.
  A record covers the half-open interval ``[time, time + period)``.
- ``ground_truth.json``: one JSON document ``{"<product id>": [parameter ids]}``
  naming, for every product, the parameters that truly drive its production.

The model: products run in turns (runs of ``--run-min``..``--run-max``
periods). Every parameter has a recipe set point per product, a mean-reverting
deviation and measurement noise; parameters that drive no product also drift
slowly. For the running product, its ``--drivers`` parameters share a common
load factor, and the production of a period is a linear function of the mean of
their readings in that period (plus 1 % noise), so the correlation between a
driver's period mean and production is strong (about 0.85), while every other
parameter is unrelated to that product's production.

Contract: the output is a pure function of the options (``random.Random(seed)``
only, integer millisecond arithmetic), so two runs with the same options write
byte-identical files. Lines are written slightly out of time order (each one
up to 30 s late for metrics, 90 s for work orders, like late sensor records);
the API sorts by ``time``.
"""
from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Sequence

START = "2026-01-05T06:00:00Z"
DEFAULT_DIR = Path(__file__).resolve().parent
METRICS_FILE = "metrics.json"
WORKORDER_FILE = "workorder.json"
GROUND_TRUTH_FILE = "ground_truth.json"

_TAU_S = 30.0           # time constant of the parameters' mean-reverting deviation
_COMMON_SHARE = 0.7     # variance share of the load factor the running product's drivers share
_GAIN = 0.15            # relative production change per standard deviation of the drivers' mean
_PROD_NOISE = 0.01      # relative noise of production
_METRICS_LATE = 30.0    # seconds a metrics line may be written late (out of time order) at most
_WORKORDER_LATE = 90.0  # the same for work-order lines


@dataclass(frozen=True)
class Options:
    """Scale and seed of a dataset; the defaults make the shipped demo files."""

    hours: float = 4.5
    params: int = 24
    products: int = 4
    drivers: int = 3
    interval: float = 20.0
    period: float = 60.0
    run_min: int = 8
    run_max: int = 24
    seed: int = 20260105
    start: str = START
    records: int | None = None

    def check(self) -> None:
        """Raise ``ValueError`` with one sentence when the options cannot make a dataset."""
        if self.products < 1 or self.drivers < 1:
            raise ValueError("--products and --drivers must be at least 1.")
        if self.params < self.products * self.drivers:
            raise ValueError(
                f"--params {self.params} is too few: {self.products} products with "
                f"{self.drivers} driving parameters each need at least {self.products * self.drivers}.")
        if not 0.001 <= self.interval <= self.period:
            raise ValueError(f"--interval {self.interval} must be between 0.001 and --period ({self.period}) seconds.")
        if not 0 < self.run_min <= self.run_max:
            raise ValueError("--run-min must be at least 1 and not above --run-max.")
        if self.hours <= 0 and not self.records:
            raise ValueError("--hours must be greater than 0.")


@dataclass(frozen=True)
class Summary:
    """What :func:`generate` wrote."""

    metrics: int
    workorders: int
    ground_truth: dict[int, list[int]]
    start: str  # the data covers [start, end)
    end: str


class _LateWriter:
    """Writes each line at a random "arrival" time up to ``late_ms`` after its record time.

    Lines come out in arrival order, so a record is never more than ``late_ms``
    behind a record written before it: slight, bounded disorder.
    """

    def __init__(self, out: IO[str], late_ms: int, rng: random.Random) -> None:
        self.out, self.late_ms, self.rng = out, max(1, late_ms), rng
        self.heap: list[tuple[int, int, str]] = []
        self.count = 0

    def write(self, time_ms: int, line: str) -> None:
        self.count += 1
        heapq.heappush(self.heap, (time_ms + self.rng.randrange(self.late_ms), self.count, line))

    def release(self, now_ms: int) -> None:
        """Write every line that has arrived by ``now_ms`` (no later record may be older than that)."""
        while self.heap and self.heap[0][0] <= now_ms:
            self.out.write(heapq.heappop(self.heap)[2])

    def flush(self) -> None:
        while self.heap:
            self.out.write(heapq.heappop(self.heap)[2])


def _iso(base: datetime, ms: int) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-01-05T08:00:00.000Z``."""
    t = base + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def generate(out_dir: Path, options: Options = Options()) -> Summary:
    """Write the three files into ``out_dir`` (created if missing); deterministic in ``options``."""
    options.check()
    rng = random.Random(options.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = datetime.fromisoformat(options.start)
    base = base.replace(tzinfo=timezone.utc) if base.tzinfo is None else base.astimezone(timezone.utc)
    interval_ms = round(options.interval * 1000)
    period_ms = round(options.period * 1000)
    if options.records:
        periods = max(1, math.ceil(options.records / options.params * interval_ms / period_ms))
    else:
        periods = max(1, round(options.hours * 3_600_000 / period_ms))
    end_ms = periods * period_ms

    params = list(range(1, options.params + 1))
    products = list(range(1, options.products + 1))
    chosen = rng.sample(params, options.products * options.drivers)
    truth = {p: sorted(chosen[i * options.drivers:(i + 1) * options.drivers]) for i, p in enumerate(products)}
    driving = set(chosen)

    level = {j: rng.uniform(20.0, 200.0) for j in params}
    scale = {j: level[j] * rng.uniform(0.02, 0.06) for j in params}
    setpoint = {(p, j): level[j] * (1 + rng.uniform(-0.08, 0.08)) for p in products for j in params}
    nominal = {p: rng.choice(range(120, 481, 20)) for p in products}
    drift = {j: (0.0 if j in driving else scale[j] * rng.uniform(0.0, 1.5),
                 rng.uniform(1.5, 6.0) * 3_600_000, rng.uniform(0, 2 * math.pi)) for j in params}
    phase = {j: rng.randrange(0, max(1, interval_ms - 50)) for j in params}
    phi = math.exp(-options.interval / _TAU_S)
    innovation = math.sqrt(1 - phi * phi)
    deviation = {j: rng.gauss(0, 1) for j in params}
    common = rng.gauss(0, 1)

    turns = rng.sample(products, len(products))  # products take turns in this order
    turn, run_left = 0, rng.randint(options.run_min, options.run_max)
    product = turns[turn]
    sums: dict[int, dict[int, list[float]]] = {}  # period -> driver -> [sum, count]
    metrics = workorders = 0
    with open(out_dir / METRICS_FILE, "w", encoding="utf-8", newline="\n") as mf, \
            open(out_dir / WORKORDER_FILE, "w", encoding="utf-8", newline="\n") as wf:
        mout = _LateWriter(mf, round(_METRICS_LATE * 1000), rng)
        wout = _LateWriter(wf, round(_WORKORDER_LATE * 1000), rng)
        tick_ms, period_index = 0, 0
        while period_index < periods:
            period_end = (period_index + 1) * period_ms
            # the readings of this period (one may fall into the next when --interval does not divide --period)
            while tick_ms < period_end:
                common = phi * common + innovation * rng.gauss(0, 1)
                for j in params:
                    deviation[j] = phi * deviation[j] + innovation * rng.gauss(0, 1)
                    t_ms = tick_ms + phase[j] + rng.randrange(0, 40)
                    if t_ms >= end_ms:
                        continue
                    d = deviation[j]
                    if j in truth[product]:
                        d = math.sqrt(_COMMON_SHARE) * common + math.sqrt(1 - _COMMON_SHARE) * d
                    amplitude, wave, shift = drift[j]
                    value = (setpoint[(product, j)] + scale[j] * d
                             + amplitude * math.sin(2 * math.pi * t_ms / wave + shift)
                             + 0.25 * scale[j] * rng.gauss(0, 1))
                    value = round(value, 3)
                    if j in truth[product]:
                        acc = sums.setdefault(t_ms // period_ms, {}).setdefault(j, [0.0, 0])
                        acc[0] += value
                        acc[1] += 1
                    mout.write(t_ms, _line({"id": j, "time": _iso(base, t_ms), "val": value}))
                    metrics += 1
                tick_ms += interval_ms
                mout.release(tick_ms)
            # production of the period just finished
            means = {k: total / n for k, (total, n) in sums.pop(period_index, {}).items()}
            zs = [(means[k] - setpoint[(product, k)]) / scale[k] for k in truth[product] if k in means]
            load = sum(zs) / len(zs) if zs else 0.0
            produced = nominal[product] * (1 + _GAIN * load + _PROD_NOISE * rng.gauss(0, 1))
            wout.write(period_index * period_ms, _line({
                "time": _iso(base, period_index * period_ms), "product": product,
                "production": max(0, round(produced))}))
            wout.release(period_end)
            workorders += 1
            period_index += 1
            run_left -= 1
            if run_left == 0:
                turn = (turn + 1) % len(turns)
                product, run_left = turns[turn], rng.randint(options.run_min, options.run_max)
        mout.flush()
        wout.flush()
    with open(out_dir / GROUND_TRUTH_FILE, "w", encoding="utf-8", newline="\n") as gf:
        gf.write("{\n" + ",\n".join(f'  "{p}": {json.dumps(ids)}' for p, ids in truth.items()) + "\n}\n")
    return Summary(metrics=metrics, workorders=workorders, ground_truth=truth,
                   start=_iso(base, 0), end=_iso(base, end_ms))


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        description="Write metrics.json, workorder.json and ground_truth.json (deterministic in the options).")
    p.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_DIR,
                   help=f"output directory (default: {DEFAULT_DIR})")
    p.add_argument("--hours", type=float, default=d.hours, help=f"hours of data (default: {d.hours})")
    p.add_argument("--records", type=int, default=None,
                   help="about this many metrics records instead of --hours (e.g. 2000000 for a benchmark)")
    p.add_argument("--params", type=int, default=d.params, help=f"machine parameters (default: {d.params})")
    p.add_argument("--products", type=int, default=d.products, help=f"products (default: {d.products})")
    p.add_argument("--drivers", type=int, default=d.drivers,
                   help=f"parameters driving each product's production (default: {d.drivers})")
    p.add_argument("--interval", type=float, default=d.interval,
                   help=f"seconds between two readings of a parameter (default: {d.interval})")
    p.add_argument("--period", type=float, default=d.period,
                   help=f"seconds of production per work-order record (default: {d.period})")
    p.add_argument("--run-min", type=int, default=d.run_min,
                   help=f"shortest product run in periods (default: {d.run_min})")
    p.add_argument("--run-max", type=int, default=d.run_max,
                   help=f"longest product run in periods (default: {d.run_max})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default: {d.seed})")
    p.add_argument("--start", default=d.start, help=f"ISO-8601 time of the first period (default: {d.start})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = Options(hours=args.hours, params=args.params, products=args.products, drivers=args.drivers,
                      interval=args.interval, period=args.period, run_min=args.run_min, run_max=args.run_max,
                      seed=args.seed, start=args.start, records=args.records)
    try:
        summary = generate(args.out_dir, options)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out_dir / METRICS_FILE}: {summary.metrics} records")
    print(f"{args.out_dir / WORKORDER_FILE}: {summary.workorders} records")
    print(f"{args.out_dir / GROUND_TRUTH_FILE}: " + ", ".join(
        f"product {p} <- parameters {ids}" for p, ids in summary.ground_truth.items()))
    print(f"time range: [{summary.start}, {summary.end})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
