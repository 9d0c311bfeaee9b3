"""A deterministic simulated production line: units passing collection points, defects charged to zones.

Every event is a pure function of ``(seed, position)`` (a BLAKE2 hash of both, no
state), so any position can be served again after a restart with the same
bytes: the producer's exactly-once resume by position works unchanged.

Events (``time`` is simulated: ``start + position * interval``)::

    {"kind": "unit", "unit_id": "U00000124", "zone": "welding", "point": "welding-2",
     "time": "2026-01-05T08:04:00.000Z"}
    {"kind": "defect", "unit_id": "U00000124", "zone": "welding", "point": "welding-2",
     "defect": "porosity", "time": "2026-01-05T08:05:00.000Z"}

Rules: even positions are units; an odd position is a defect of the unit just
before it with probability ``2 * defect_rate[zone]`` (so about ``defect_rate``
of the units of a zone are found defective, at most once each), otherwise
another unit. The zone of a unit is drawn with ``zone_weights``; its point is
one of ``points_per_zone``. First-pass yield of a zone is therefore
``1 - defects / units``, exactly computable from two counts.

Minimal use::

    line = ProductionLine(seed=7, records=10_000)
    line.event(0)["kind"]          # 'unit'
    for position, event in line.events(0, 100): ...
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

from framework.errors import SettingsError

ZONES: Mapping[str, float] = {"cutting": 0.02, "welding": 0.06, "painting": 0.04, "assembly": 0.03}
WEIGHTS: Mapping[str, float] = {"cutting": 0.3, "welding": 0.25, "painting": 0.25, "assembly": 0.2}
DEFECTS = ("scratch", "porosity", "misalignment", "missing part", "paint run")
START = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)


def _uniforms(seed: int, position: int) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) for ``(seed, position)``."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=16).digest()
    return tuple(int.from_bytes(digest[i:i + 4], "big") / 2 ** 32 for i in range(0, 16, 4))  # type: ignore[return-value]


@dataclass(frozen=True)
class ProductionLine:
    """The simulation's parameters; :meth:`event` is the state-free event of a position.

    ``seed``: any integer; ``records``: events in the stream (None: endless);
    ``interval``: simulated seconds between events (60 = one a minute, so a
    simulated day every 1,440 events); ``rate``: events per real second when
    served (the API's default pacing). Raises :class:`SettingsError` for a
    rate, interval or rates out of range.
    """

    seed: int = 42
    records: int | None = None
    rate: float = 20.0
    interval: float = 60.0
    start: datetime = START
    defect_rate: Mapping[str, float] = field(default_factory=lambda: dict(ZONES))
    zone_weights: Mapping[str, float] = field(default_factory=lambda: dict(WEIGHTS))
    points_per_zone: int = 3

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.interval > 0:
            raise SettingsError(f"rate={self.rate} and interval={self.interval} must both be above 0; "
                                "e.g. rate=20 events per second, interval=60 simulated seconds.")
        if self.records is not None and self.records < 0:
            raise SettingsError(f"records={self.records} is negative; give 0 or more, or None for endless.")
        if set(self.defect_rate) != set(self.zone_weights) or not self.zone_weights:
            raise SettingsError("defect_rate and zone_weights must name the same zones; "
                                f"got {sorted(self.defect_rate)} and {sorted(self.zone_weights)}.")
        bad = {z: r for z, r in self.defect_rate.items() if not 0 <= r <= 0.5}
        if bad:
            raise SettingsError(f"Defect rates {bad} are out of range; use 0 to 0.5 per zone.")

    def _zone(self, u: float) -> str:
        total = sum(self.zone_weights.values())
        acc = 0.0
        for zone, weight in self.zone_weights.items():
            acc += weight / total
            if u < acc:
                return zone
        return next(reversed(list(self.zone_weights)))

    def _unit(self, position: int) -> dict[str, Any]:
        u_zone, u_point, _, _ = _uniforms(self.seed, position)
        zone = self._zone(u_zone)
        return {"kind": "unit", "unit_id": f"U{position:08d}", "zone": zone,
                "point": f"{zone}-{1 + int(u_point * self.points_per_zone)}"}

    def event(self, position: int) -> dict[str, Any]:
        """The event at ``position`` (0-based), with its simulated ``time``."""
        if position % 2 == 1:
            unit = self._unit(position - 1)
            _, _, u_defect, u_kind = _uniforms(self.seed, position)
            if u_defect < 2 * self.defect_rate[unit["zone"]]:
                event = {**unit, "kind": "defect", "defect": DEFECTS[int(u_kind * len(DEFECTS))]}
            else:
                event = self._unit(position)
        else:
            event = self._unit(position)
        when = self.start + timedelta(seconds=position * self.interval)
        event["time"] = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        return event

    def events(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(position, event)`` from ``start`` to ``stop`` (exclusive; default :attr:`records`, or endless)."""
        end = stop if stop is not None else self.records
        position = start
        while end is None or position < end:
            yield position, self.event(position)
            position += 1

    def totals(self, stop: int | None = None) -> dict[str, Any]:
        """The answer key for positions ``[0, stop)``: units and defects per zone, units per day."""
        units: dict[str, int] = {}
        defects: dict[str, int] = {}
        days: dict[str, int] = {}
        for _, e in self.events(0, stop if stop is not None else self.records):
            bucket = units if e["kind"] == "unit" else defects
            bucket[e["zone"]] = bucket.get(e["zone"], 0) + 1
            if e["kind"] == "unit":
                days[e["time"][:10]] = days.get(e["time"][:10], 0) + 1
        return {"units": units, "defects": defects, "units_per_day": days}
