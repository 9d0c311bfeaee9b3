"""`pipeline api`: serve the dataset files of the data directory as HTTP streams (see apps/api.py).

    python cmd/api_cmd.py                       # PIPELINE_API_HOST:PIPELINE_API_PORT, data_source/
    python cmd/api_cmd.py --port 0 --delay 0    # a free port, no pacing
    python cmd/api_cmd.py --data-dir my_data --time-field ts   # a user's .json/.jsonl/.ndjson files, ordered by ts
    curl -N http://127.0.0.1:5000/stream_data_metrics

Prints the URL it listens on and the streams, then serves until Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from apps.api import EXTENSION, STREAM_PREFIX, create_app, serve_in_thread
from framework import cli
from framework.cli import parser, run
from framework.settings import MAX_DELAY_SECONDS, Settings


def build_parser() -> argparse.ArgumentParser:
    p = parser("Serve every .json, .jsonl and .ndjson file of the data directory (JSON Lines or one JSON array) "
               "as an HTTP stream, in time order or file order.")
    p.add_argument("--host", default=None, help="address to bind (default: PIPELINE_API_HOST or 127.0.0.1)")
    p.add_argument("--port", type=cli.port(), default=None,
                   help="port to bind, 0 picks a free one (default: PIPELINE_API_PORT or 5000)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="directory of the .json/.jsonl/.ndjson files (default: PIPELINE_DATA_DIR or data_source)")
    p.add_argument("--time-field", default=None,
                   help="record member to order by, '' for file order (default: PIPELINE_API_TIME_FIELD or time)")
    p.add_argument("--delay", type=cli.bounded_float(0, MAX_DELAY_SECONDS), default=None,
                   help="default seconds between records, 0 for no pacing (default: PIPELINE_API_DELAY or 0.1)")
    return p


def _main(args: argparse.Namespace, settings: Settings) -> int:
    if args.time_field is not None:
        settings = settings.replace(api_time_field=args.time_field)
    app = create_app(settings, data_dir=args.data_dir, delay=args.delay)
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    server = serve_in_thread(app, host, port)
    try:
        state = app.extensions[EXTENSION]
        print(f"Streaming API listening on {server.url} (default delay {state.delay} s; Ctrl-C stops it)")
        for stream in sorted(state.catalog.streams.values(), key=lambda s: s.name):
            order = f"{stream.first_time} .. {stream.last_time}" if stream.timed else "file order"
            bad = f"  ({stream.not_objects} not JSON objects, served for the dead-letter topic)" \
                if stream.not_objects else ""
            print(f"  {server.url}{STREAM_PREFIX}{stream.name}  {stream.records} records  {order}{bad}")
        for broken in sorted(state.catalog.unavailable.values(), key=lambda u: u.name):
            print(f"  {server.url}{STREAM_PREFIX}{broken.name}  NOT SERVED: {broken.reason}")
        sys.stdout.flush()
    except BaseException:
        server.stop()
        raise
    server.serve_until_signal()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), _main, argv)
