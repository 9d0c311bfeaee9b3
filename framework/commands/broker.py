"""``python cmd/broker_cmd.py start|stop|status|restart``: manage the local Kafka broker.

With ``PIPELINE_BROKER_COUNT=3`` (any count above 1) the same actions manage a
local KRaft cluster of that many brokers instead (see framework/local_cluster.py).
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from framework import cli
from framework.errors import BrokerError
from framework.local.kafka_cluster import LocalKafkaCluster, local_kafka
from framework.settings import Settings


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.uses_local_broker:
        raise BrokerError(
            f"PIPELINE_KAFKA_BOOTSTRAP_SERVERS is set ({settings.kafka_bootstrap_servers}), so no local broker "
            "is managed here; unset it to use the embedded broker.")
    broker = local_kafka(settings)
    if isinstance(broker, LocalKafkaCluster):
        return _cluster(args, broker)
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


def _cluster(args: argparse.Namespace, cluster: LocalKafkaCluster) -> int:
    n = len(cluster.nodes)
    if args.action in ("stop", "restart"):
        stopped = cluster.stop()
        print(f"stopped local Kafka cluster ({n} brokers)" if stopped else "no local Kafka cluster node was running")
    if args.action in ("start", "restart"):
        cluster.start()
        print(f"local Kafka cluster {cluster.version} running: {n} brokers at {cluster.bootstrap_servers}")
        for node in cluster.status()["nodes"]:
            print(f"  node {node['node_id']}: pid {node['pid']}, log {node['log_file']}")
    if args.action == "status":
        st = cluster.status()
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            up = sum(node["running"] for node in st["nodes"])
            print(f"{'running' if st['running'] else 'not running'}: {up} of {n} brokers up at "
                  f"{st['bootstrap_servers']}; state {st['state_dir']}")
            for node in st["nodes"]:
                state = f"running (pid {node['pid']})" if node["running"] else "not running"
                print(f"  node {node['node_id']} at {node['bootstrap_servers']}: {state}; log {node['log_file']}")
        return 0 if st["running"] else 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Start, stop or inspect the local Apache Kafka broker (KRaft, 127.0.0.1): a single node, "
                   "or a cluster of PIPELINE_BROKER_COUNT nodes.")
    p.add_argument("action", choices=["start", "stop", "status", "restart"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    return cli.run(p, _main, argv)
