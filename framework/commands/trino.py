"""``pipeline trino start|stop|status|restart``: manage the local Trino (the seeds' Presto) over the Iceberg tables.

With ``PIPELINE_TRINO_URL`` set, nothing is managed here: ``status`` reports on
that server instead. ``start`` downloads Trino once (server core and Iceberg
plugin from Maven Central, about 540 MB, progress on stderr) and needs a Java
24+ JDK beside the Java 17 of Kafka and Spark (see docs/trino.md).
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from framework import cli
from framework.errors import TrinoError
from framework.local.trino import LocalTrino, server_info
from framework.settings import Settings


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.uses_local_trino:
        if args.action in ("start", "stop", "restart"):
            raise TrinoError(f"PIPELINE_TRINO_URL is set ({settings.trino_url}), so no local Trino is managed "
                             "here; unset it to use the local server.")
        info = server_info(settings.trino_url, timeout=10)
        if info is None:
            print(f"not reachable: Trino at {settings.trino_url}")
            return 3
        print(f"reachable: Trino {info.get('nodeVersion', {}).get('version', '?')} at {settings.trino_url}")
        return 0
    trino = LocalTrino.from_settings(settings)
    if args.action in ("stop", "restart"):
        print("stopped local Trino" if trino.stop() else "no local Trino was running")
    if args.action in ("start", "restart"):
        trino.start()
        st = trino.status()
        print(f"local Trino {st['version']} running (pid {st['pid']}) at {st['url']}, catalog "
              f"{settings.iceberg_catalog}, schema {settings.iceberg_namespace}")
        print(f"  state: {st['state_dir']}\n  log:   {st['log_file']}")
    if args.action == "status":
        st = trino.status()
        if args.json:
            print(json.dumps(st, indent=2))
        elif st["running"]:
            answers = "answers" if st["answers"] else "does not answer yet"
            print(f"running (pid {st['pid']}) at {st['url']}, {answers}; state {st['state_dir']}; "
                  f"log {st['log_file']}")
        else:
            print(f"not running (state {st['state_dir']})")
        return 0 if st["running"] else 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Start, stop or inspect the local Trino (Trino 476 on 127.0.0.1, Java 24+, state under "
                   "PIPELINE_STATE_DIR/trino) serving the Iceberg tables of the catalog to "
                   "`pipeline query --engine trino`.")
    p.add_argument("action", choices=["start", "stop", "status", "restart"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    return cli.run(p, _main, argv)
