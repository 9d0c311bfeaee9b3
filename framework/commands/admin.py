"""``python cmd/admin_cmd.py list|create|delete|describe|settings``: topics and settings.

``settings --markdown`` prints the reference page ``docs/settings.md``.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from framework import cli
from framework.admin import KafkaAdmin
from framework.errors import SettingsError
from framework.settings import Settings, env_name, settings_markdown


def _configs(pairs: list[str]) -> dict[str, str]:
    configs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingsError(f"--config {pair!r} is not of the form key=value, e.g. retention.ms=86400000.")
        configs[key] = value
    return configs


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "settings" and args.markdown:
        print(settings_markdown(), end="")
        return 0
    if args.action == "settings":
        for var, default, help_text in Settings.describe():
            field = var[len("PIPELINE_"):].lower()
            current = getattr(settings, field)
            current = "" if current is None else current
            mark = "*" if var in os.environ else " "
            print(f"{mark} {var:<36} {str(current):<28} {help_text} (default: {default or 'empty'})")
        print("(* = set in the environment)")
        return 0
    with KafkaAdmin(settings) as admin:
        if args.action == "list":
            for name in admin.list_topics(include_internal=args.all):
                print(name)
        elif args.action == "create":
            configs = _configs(args.config)
            for topic in args.topics:
                created = admin.create_topic(topic, args.partitions, args.replication_factor, configs)
                print(f"{'created' if created else 'exists '} {topic}")
        elif args.action == "delete":
            for topic in args.topics:
                print(f"{'deleted' if admin.delete_topic(topic) else 'absent '} {topic}")
        elif args.action == "describe":
            for topic in args.topics or admin.list_topics():
                info = admin.describe_topic(topic)
                ends = admin.end_offsets(topic)
                print(f"{info.name}: {info.partition_count} partitions, replication factor "
                      f"{info.replication_factor}, {sum(ends.values())} messages (sum of end offsets)")
                for p in info.partitions:
                    print(f"  partition {p.partition}: leader {p.leader}, replicas {list(p.replicas)}, "
                          f"isr {list(p.isr)}, end offset {ends.get(p.partition, 0)}")
                for key, value in sorted(info.configs.items()):
                    print(f"  {key}={value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Create, delete, list and describe Kafka topics; show the settings.")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list topics").add_argument("--all", action="store_true",
                                                           help="include internal topics")
    c = sub.add_parser("create", help=f"create topics (idempotent); defaults from {env_name('topic_partitions')}")
    c.add_argument("topics", nargs="+")
    c.add_argument("--partitions", type=cli.bounded_int(1), default=None,
                   help="partitions, 1 or more (default: PIPELINE_TOPIC_PARTITIONS)")
    c.add_argument("--replication-factor", type=cli.bounded_int(1), default=None,
                   help="copies of each partition, 1 to the broker count (default: min(3, brokers))")
    c.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="topic config, repeatable")
    sub.add_parser("delete", help="delete topics").add_argument("topics", nargs="+")
    sub.add_parser("describe", help="partitions, leaders, offsets, configs").add_argument("topics", nargs="*")
    st = sub.add_parser("settings", help="every PIPELINE_* setting with its current value")
    st.add_argument("--markdown", action="store_true",
                    help="print the settings reference page instead (docs/settings.md)")
    return cli.run(p, _main, argv)
