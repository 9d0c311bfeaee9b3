"""`pipeline game-api`: serve the game API (apps/game_api.py); each action is logged to Kafka before it is answered.

    python cmd/game_api_cmd.py                      # http://127.0.0.1:5001, topic "events"
    python cmd/game_api_cmd.py --port 0             # a free port
    curl http://127.0.0.1:5001/purchase_a_sword
    curl "http://127.0.0.1:5001/join_guild?guild=the-rangers"

Kafka comes from the settings (PIPELINE_KAFKA_BOOTSTRAP_SERVERS, or the local
broker of `python cmd/broker_cmd.py start`). Prints the URL it listens on and the
actions, then serves until Ctrl-C or SIGTERM, and closes its Kafka producer.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from apps.api import serve_in_thread
from apps.game_api import ACTIONS, EVENTS_TOPIC, KEY_FIELD, create_game_app
from framework import cli
from framework.cli import parser, run
from framework.producer.event_log import DEFAULT_TIMEOUT, KafkaEventLog
from framework.settings import MAX_SECONDS, Settings

DEFAULT_PORT = 5001


def build_parser() -> argparse.ArgumentParser:
    p = parser("Serve the game API: each player action is answered once Kafka acknowledged its event.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=cli.port(), default=DEFAULT_PORT,
                   help=f"port to bind, 0 picks a free one (default {DEFAULT_PORT})")
    p.add_argument("--topic", default=EVENTS_TOPIC, help=f"Kafka topic of the events (default {EVENTS_TOPIC})")
    p.add_argument("--ack-timeout", type=cli.bounded_float(0, MAX_SECONDS, low_inclusive=False),
                   default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"answer 503 when Kafka has not acknowledged an event after SECONDS "
                        f"(default {DEFAULT_TIMEOUT:g})")
    return p


def _main(args: argparse.Namespace, settings: Settings) -> int:
    event_log = KafkaEventLog(settings, args.topic, key_field=KEY_FIELD, timeout=args.ack_timeout)
    app = create_game_app(settings, event_log=event_log)
    server = serve_in_thread(app, args.host, args.port)
    try:
        print(f"Game API listening on {server.url}, logging events to topic {args.topic!r} at "
              f"{settings.bootstrap_servers} (Ctrl-C stops it)")
        for path, what in ACTIONS.items():
            print(f"  {server.url}{path:<20} {what}")
        sys.stdout.flush()
        server.serve_until_signal()
    finally:
        server.stop()
        event_log.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), _main, argv)
