"""``python cmd/broker_cmd.py start|stop|status|restart``: manage the local Kafka broker."""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from framework import cli
from framework.errors import BrokerError
from framework.local_broker import LocalKafkaBroker
from framework.settings import Settings


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.uses_local_broker:
        raise BrokerError(
            f"PIPELINE_KAFKA_BOOTSTRAP_SERVERS is set ({settings.kafka_bootstrap_servers}), so no local broker "
            "is managed here; unset it to use the embedded broker.")
    broker = LocalKafkaBroker.from_settings(settings)
    if args.action in ("stop", "restart"):
        stopped = broker.stop()
        print("stopped local Kafka broker" if stopped else "no local Kafka broker was running")
    if args.action in ("start", "restart"):
        broker.start()
        st = broker.status()
        print(f"local Kafka broker {broker.version} running (pid {st['pid']}) at {st['bootstrap_servers']}")
        print(f"  data: {st['data_dir']}\n  log:  {st['log_file']}")
    if args.action == "status":
        st = broker.status()
        if args.json:
            print(json.dumps(st, indent=2))
        elif st["running"]:
            print(f"running (pid {st['pid']}) at {st['bootstrap_servers']}; data {st['data_dir']}; "
                  f"log {st['log_file']}")
        else:
            print(f"not running (data {st['data_dir']})")
        return 0 if st["running"] else 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Start, stop or inspect the local Apache Kafka broker (KRaft, single node, 127.0.0.1).")
    p.add_argument("action", choices=["start", "stop", "status", "restart"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    return cli.run(p, _main, argv)
