"""``pipeline postgres start|stop|status|restart|url``: manage the local PostgreSQL server.

With ``PIPELINE_POSTGRES_URL`` set, nothing is managed here: ``status`` and
``url`` report on that server instead.
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from framework import cli
from framework.errors import PostgresError
from framework.local.postgres import LocalPostgres, PostgresTarget
from framework.settings import Settings


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.uses_local_postgres:
        target = PostgresTarget.parse(settings.postgres_url)
        if args.action in ("start", "stop", "restart"):
            raise PostgresError(f"PIPELINE_POSTGRES_URL is set ({target.safe_url}), so no local PostgreSQL is "
                                "managed here; unset it to use the embedded server.")
        if args.action == "url":
            print(target.url if args.with_password else target.safe_url)
            return 0
        with target.connect(timeout=10) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        print(f"reachable: PostgreSQL {version} at {target.safe_url}")
        return 0
    pg = LocalPostgres.from_settings(settings)
    if args.action in ("stop", "restart"):
        print("stopped local PostgreSQL" if pg.stop() else "no local PostgreSQL was running")
    if args.action in ("start", "restart"):
        pg.start()
        st = pg.status()
        print(f"local PostgreSQL running (pid {st['pid']}) at {st['url']}")
        print(f"  data: {st['data_dir']}\n  log:  {st['log_file']}")
    if args.action == "url":
        print(pg.url if args.with_password else pg.target.safe_url)
    if args.action == "status":
        st = pg.status()
        if args.json:
            print(json.dumps(st, indent=2))
        elif st["running"]:
            print(f"running (pid {st['pid']}) at {st['url']}; data {st['data_dir']}; log {st['log_file']}")
        else:
            print(f"not running (data {st['data_dir']})")
        return 0 if st["running"] else 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = cli.parser("Start, stop or inspect the local PostgreSQL server (Debian's package, 127.0.0.1, data under "
                   "PIPELINE_STATE_DIR/postgres) used by the JDBC sink, the dashboard and the Iceberg catalog.")
    p.add_argument("action", choices=["start", "stop", "status", "restart", "url"])
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.add_argument("--with-password", action="store_true", help="url: include the password")
    return cli.run(p, _main, argv)
