"""Load generator for the game API: N simulated players, a mix of actions, a total rate, bounded.

    plan = LoadPlan(base_url="http://127.0.0.1:5001", players=8, rate=100, duration=10)
    report = LoadGenerator(plan).run(on_progress=print)
    print(report.text())

Each player is a thread with its own ``requests.Session`` and its own
``User-Agent`` (``game-load/1.0 (player 003)``), so the game logs (and keys)
its events per player. Players share one *ticket sequence* that decides the
action of every request and ends the run after ``requests`` requests. The mix is
exact, not sampled: the sequence is a smooth weighted round-robin, so of every
``sum(weights)`` consecutive requests each action gets exactly its weight
(``sword=3,shield=1`` -> sword, sword, shield, sword, ...). Guild joins cycle
through ``guilds``.

Pacing: ``rate`` requests per second in total, spread evenly over the players
(each waits ``players / rate`` seconds between the starts of its requests;
a player that falls behind does not burst to catch up); ``rate=0`` sends as fast
as the players and the API allow.

Bounds: the run stops after ``duration`` seconds or ``requests`` requests,
whichever comes first, and only ever requests ``base_url`` + an action path;
every request has a timeout. A non-200 answer or a connection error counts as an
error, with its message (the API's ``error`` sentence) in the report.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from framework.errors import FrameworkError

#: action name -> path of the game API
ACTIONS: dict[str, str] = {
    "visit": "/", "sword": "/purchase_a_sword", "shield": "/purchase_a_shield", "axe": "/purchase_an_axe",
    "potion": "/purchase_a_potion", "spear": "/purchase_a_spear", "join": "/join_guild", "war": "/declare_war",
    "peace": "/declare_peace",
}
DEFAULT_MIX: dict[str, int] = {"visit": 5, "sword": 25, "shield": 15, "axe": 10, "potion": 20, "join": 15,
                               "war": 5, "peace": 5}
DEFAULT_GUILDS = ("the-knights", "the-rangers", "the-mages")
DEFAULT_BASE_URL = "http://127.0.0.1:5001"
MAX_PLAYERS = 500
MAX_DURATION = 3600.0


class LoadPlanError(FrameworkError, ValueError):
    """A load generator option is not valid."""


def parse_mix(text: str) -> dict[str, int]:
    """``"sword=3,shield=1,join=2"`` -> ``{"sword": 3, "shield": 1, "join": 2}`` (checked)."""
    mix: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or not weight.strip().isdigit():
            raise LoadPlanError(f"Mix entry {part!r} is not valid; write action=weight with a whole number, "
                                f"e.g. sword=3,shield=1 (actions: {', '.join(ACTIONS)}).")
        if name in mix:
            raise LoadPlanError(f"Action {name!r} is given twice in the mix {text!r}; give it once.")
        mix[name] = int(weight)
    return check_mix(mix)


def check_mix(mix: Mapping[str, int]) -> dict[str, int]:
    """The mix without zero weights; :class:`LoadPlanError` for unknown actions, negative or all-zero weights."""
    unknown = [name for name in mix if name not in ACTIONS]
    if unknown:
        raise LoadPlanError(f"Unknown action(s) {', '.join(map(repr, unknown))} in the mix; "
                            f"available: {', '.join(ACTIONS)}.")
    bad = {name: w for name, w in mix.items() if not isinstance(w, int) or isinstance(w, bool) or w < 0}
    if bad:
        raise LoadPlanError(f"Mix weights must be whole numbers not below 0, not {bad!r}.")
    kept = {name: w for name, w in mix.items() if w > 0}
    if not kept:
        raise LoadPlanError("The mix gives every action weight 0; give at least one action a weight above 0.")
    return kept


@dataclass(frozen=True)
class LoadPlan:
    """What to send: see the module docstring. Checked by :meth:`validate` (``LoadGenerator`` calls it)."""

    base_url: str = DEFAULT_BASE_URL
    players: int = 8
    rate: float = 50.0
    duration: float = 10.0
    requests: int | None = None
    mix: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    guilds: Sequence[str] = DEFAULT_GUILDS
    timeout: float = 15.0

    def validate(self) -> "LoadPlan":
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise LoadPlanError(f"Base URL {self.base_url!r} is not valid; give the game API's address like "
                                f"{DEFAULT_BASE_URL}.")
        if not 1 <= self.players <= MAX_PLAYERS:
            raise LoadPlanError(f"players={self.players} is not valid; use 1 to {MAX_PLAYERS}.")
        if not self.rate >= 0:
            raise LoadPlanError(f"rate={self.rate} is not valid; give requests per second in total, or 0 for "
                                "as fast as possible.")
        if not 0 < self.duration <= MAX_DURATION:
            raise LoadPlanError(f"duration={self.duration} is not valid; give seconds above 0, at most "
                                f"{MAX_DURATION:g}.")
        if self.requests is not None and self.requests < 1:
            raise LoadPlanError(f"requests={self.requests} is not valid; give a count of at least 1, or none to "
                                "run for the whole duration.")
        if not self.timeout > 0:
            raise LoadPlanError(f"timeout={self.timeout} is not valid; give seconds above 0.")
        if not self.guilds or not all(isinstance(g, str) and g for g in self.guilds):
            raise LoadPlanError(f"guilds={list(self.guilds)!r} is not valid; give at least one guild name.")
        check_mix(self.mix)
        return self


class TicketSequence:
    """Thread-safe: the action of every request, in smooth weighted round-robin order, at most ``limit``."""

    def __init__(self, mix: Mapping[str, int], limit: int | None = None) -> None:
        self.weights = check_mix(mix)
        self.limit = limit
        self.total = sum(self.weights.values())
        self._current = {name: 0 for name in self.weights}
        self._issued = 0
        self._per_action: Counter[str] = Counter()
        self._lock = threading.Lock()

    def next(self) -> tuple[int, str, int] | None:
        """(request index, action, index among this action's requests), or None when the limit is reached."""
        with self._lock:
            if self.limit is not None and self._issued >= self.limit:
                return None
            for name, weight in self.weights.items():
                self._current[name] += weight
            action = max(self._current, key=lambda n: self._current[n])  # first of the largest: stable
            self._current[action] -= self.total
            index, nth = self._issued, self._per_action[action]
            self._issued += 1
            self._per_action[action] += 1
            return index, action, nth


@dataclass
class Progress:
    """A snapshot while the load runs."""

    elapsed: float
    requests: int
    errors: int

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        return (f"{self.elapsed:6.1f} s  {self.requests:7d} requests  {self.requests_per_second:7.1f} requests/s  "
                f"{self.errors} errors")


@dataclass
class LoadReport:
    """What a run did: counts per action (answered 200), errors by message, latencies."""

    plan: LoadPlan
    elapsed: float = 0.0
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    error_messages: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.ok.values()) + sum(self.failed.values())

    @property
    def errors(self) -> int:
        return sum(self.failed.values())

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def latency(self, quantile: float) -> float:
        """Latency (seconds) at ``quantile`` (0..1) of every request, 0 when there was none."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def text(self) -> str:
        """The report as printed by ``cmd/game_load_cmd.py``."""
        lines = [f"{self.requests} requests in {self.elapsed:.1f} s: {self.requests_per_second:.1f} requests/s, "
                 f"{self.requests - self.errors} ok, {self.errors} errors "
                 f"({self.plan.players} players, target rate "
                 f"{f'{self.plan.rate:g}/s' if self.plan.rate else 'unlimited'})",
                 f"latency: p50 {self.latency(0.5) * 1000:.1f} ms, p95 {self.latency(0.95) * 1000:.1f} ms, "
                 f"max {self.latency(1.0) * 1000:.1f} ms",
                 "action    ok  errors  path"]
        for action in ACTIONS:
            if self.ok[action] or self.failed[action]:
                lines.append(f"{action:<7} {self.ok[action]:>4}  {self.failed[action]:>6}  {ACTIONS[action]}")
        for message, count in self.error_messages.most_common(5):
            lines.append(f"error x{count}: {message}")
        return "\n".join(lines)


class LoadGenerator:
    """Runs a :class:`LoadPlan`; ``session_factory`` builds one requests-like session per player (injectable)."""

    def __init__(self, plan: LoadPlan, session_factory: Callable[[], Any] | None = None) -> None:
        self.plan = plan.validate()
        self.session_factory = session_factory or _requests_session
        self.stop_event = threading.Event()
        self._lock = threading.Lock()

    def url(self, action: str) -> str:
        return self.plan.base_url.rstrip("/") + ACTIONS[action]

    def run(self, on_progress: Callable[[Progress], None] | None = None, progress_every: float = 2.0) -> LoadReport:
        """Send the load; blocks until ``duration`` passed, ``requests`` were sent, or :meth:`stop`."""
        plan = self.plan
        report = LoadReport(plan)
        tickets = TicketSequence(plan.mix, plan.requests)
        started = time.monotonic()
        deadline = started + plan.duration
        players = [threading.Thread(target=self._player, args=(i, tickets, report, started, deadline),
                                    name=f"player-{i + 1}", daemon=True) for i in range(plan.players)]
        for player in players:
            player.start()
        next_progress = started + progress_every
        try:
            while any(p.is_alive() for p in players):
                if time.monotonic() > deadline + plan.timeout + 5:
                    break  # a hung request cannot keep the run alive: players are daemon threads
                self.stop_event.wait(0.05)
                now = time.monotonic()
                if on_progress is not None and now >= next_progress:
                    with self._lock:
                        on_progress(Progress(now - started, report.requests, report.errors))
                    next_progress += progress_every
        finally:
            self.stop_event.set()
            for player in players:
                player.join(timeout=plan.timeout)
        report.elapsed = time.monotonic() - started
        return report

    def stop(self) -> None:
        """Ask the players to stop after their current request (thread- and signal-safe)."""
        self.stop_event.set()

    def _player(self, index: int, tickets: TicketSequence, report: LoadReport, started: float,
                deadline: float) -> None:
        plan = self.plan
        interval = plan.players / plan.rate if plan.rate else 0.0
        next_at = started + interval * index / plan.players  # players start staggered
        session = self.session_factory()
        try:
            session.headers["User-Agent"] = f"game-load/1.0 (player {index + 1:03d})"
            while not self.stop_event.is_set():
                now = time.monotonic()
                if interval:
                    if next_at >= deadline:
                        return
                    if next_at > now and self.stop_event.wait(next_at - now):
                        return
                    next_at = max(next_at + interval, time.monotonic() - interval)  # no catch-up bursts
                if time.monotonic() >= deadline:
                    return
                ticket = tickets.next()
                if ticket is None:
                    return
                self._request(session, ticket, report)
        finally:
            session.close()

    def _request(self, session: Any, ticket: tuple[int, str, int], report: LoadReport) -> None:
        _, action, nth = ticket
        params = {"guild": self.plan.guilds[nth % len(self.plan.guilds)]} if action == "join" else None
        began = time.monotonic()
        error = None
        try:
            response = session.get(self.url(action), params=params, timeout=self.plan.timeout,
                                   allow_redirects=False)
            if response.status_code != 200:
                error = f"HTTP {response.status_code}: {_error_text(response)}"
        except Exception as exc:  # noqa: BLE001 - connection refused, timeout, ...: counted, with its message
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        latency = time.monotonic() - began
        with self._lock:
            report.latencies.append(latency)
            if error is None:
                report.ok[action] += 1
            else:
                report.failed[action] += 1
                report.error_messages[error] += 1


def _error_text(response: Any) -> str:
    try:
        body = response.json()
        text = body.get("error") if isinstance(body, dict) else None
    except Exception:  # noqa: BLE001 - not JSON
        text = None
    text = text or getattr(response, "text", "") or ""
    return str(text).splitlines()[0][:200] if text else "(no body)"


def _requests_session() -> Any:
    import requests

    return requests.Session()
