"""`pipeline game-load`: simulate players against the game API (see apps/game_load.py) and report requests/s.

    pipeline game-load                                  # 8 players, 50 requests/s, 10 s
    pipeline game-load --players 20 --rate 0 --duration 30      # as fast as possible
    pipeline game-load --requests 100 --mix sword=3,shield=1,join=1

Bounded: stops after --duration seconds or --requests requests, whichever comes
first (or Ctrl-C), and only requests --url. Prints a progress line every --progress seconds,
then the totals: requests/s, latency, answers per action and the errors.
Exit code 0 when every request was answered 200, 1 otherwise.
"""
from __future__ import annotations

import argparse
import signal
from typing import Sequence

from apps.game_load import (ACTIONS, DEFAULT_BASE_URL, DEFAULT_GUILDS, DEFAULT_MIX, MAX_DURATION, MAX_PLAYERS,
                            LoadGenerator, LoadPlan, parse_mix)
from framework import cli
from framework.cli import parser, run
from framework.settings import MAX_SECONDS, Settings

MAX_RATE = 1e6  # requests/s in total; far above what one machine sends

MIX_TEXT = ",".join(f"{name}={weight}" for name, weight in DEFAULT_MIX.items())


def build_parser() -> argparse.ArgumentParser:
    p = parser("Simulate players sending a mix of actions to the game API at a given total rate.")
    p.add_argument("--url", default=DEFAULT_BASE_URL, help=f"base URL of the game API (default {DEFAULT_BASE_URL})")
    p.add_argument("--players", type=cli.bounded_int(1, MAX_PLAYERS), default=8,
                   help="simulated players, one thread and session each (default 8)")
    p.add_argument("--rate", type=cli.bounded_float(0, MAX_RATE), default=50.0,
                   help="requests per second in total, 0 = as fast as possible (default 50)")
    p.add_argument("--duration", type=cli.bounded_float(0, MAX_DURATION, low_inclusive=False), default=10.0,
                   help="seconds to run at most (default 10)")
    p.add_argument("--requests", type=cli.bounded_int(1), default=None,
                   help="requests to send at most (default: no count limit)")
    p.add_argument("--mix", default=MIX_TEXT,
                   help=f"action=weight list; actions: {', '.join(ACTIONS)} (default {MIX_TEXT})")
    p.add_argument("--guilds", default=",".join(DEFAULT_GUILDS),
                   help=f"guilds the joins cycle through (default {','.join(DEFAULT_GUILDS)})")
    p.add_argument("--timeout", type=cli.bounded_float(0, MAX_SECONDS, low_inclusive=False), default=15.0,
                   help="seconds one request may take (default 15)")
    p.add_argument("--progress", type=cli.bounded_float(0, MAX_SECONDS, low_inclusive=False), default=2.0,
                   help="seconds between progress lines (default 2)")
    return p


def _main(args: argparse.Namespace, settings: Settings) -> int:
    plan = LoadPlan(base_url=args.url, players=args.players, rate=args.rate, duration=args.duration,
                    requests=args.requests, mix=parse_mix(args.mix),
                    guilds=tuple(g.strip() for g in args.guilds.split(",") if g.strip()), timeout=args.timeout)
    generator = LoadGenerator(plan)
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop the players, then print what was sent
        signal.signal(sig, lambda *_: generator.stop())
    limit = f"{plan.requests} requests or {plan.duration:g} s" if plan.requests else f"{plan.duration:g} s"
    print(f"{plan.players} players -> {plan.base_url}, "
          f"{f'{plan.rate:g} requests/s' if plan.rate else 'as fast as possible'}, for {limit}", flush=True)
    report = generator.run(on_progress=lambda p: print(p.line(), flush=True), progress_every=args.progress)
    print(report.text(), flush=True)
    return 0 if report.errors == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), _main, argv)
