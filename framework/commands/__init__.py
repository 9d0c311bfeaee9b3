"""The commands: each module has ``main(argv=None) -> int``; ``pipeline <subcommand>`` and ``cmd/*.py`` call it.

:data:`SUBCOMMANDS` is the one table of the ``pipeline`` console command: subcommand name ->
``"module.path:main"``. A new command is one line there (and one in :data:`SUBCOMMAND_HELP`, the
line ``pipeline --help`` shows; without it the first line of the module's docstring is shown).
Modules are imported only when their subcommand runs, so ``pipeline --help`` starts no JVM and
the table may name modules outside ``framework`` (the demo ``apps``, the ``bench`` of a source
checkout) without the library importing them.
"""
from __future__ import annotations

SUBCOMMANDS: dict[str, str] = {
    "run": "apps.pipeline:main",
    "produce": "framework.commands.produce:main",
    "consume": "framework.commands.consume:main",
    "query": "framework.commands.query:main",
    "admin": "framework.commands.admin:main",
    "broker": "framework.commands.broker:main",
    "api": "apps.commands.api:main",
    "game-api": "apps.commands.game_api:main",
    "game-load": "apps.commands.game_load:main",
    "bench": "bench.command:main",
    "postgres": "framework.commands.postgres:main",
    "tables": "framework.commands.tables:main",
    "trino": "framework.commands.trino:main",
    "dashboard": "apps.dashboard:main",
    "production-line": "apps.production_line_demo:main",
}

SUBCOMMAND_HELP: dict[str, str] = {
    "run": "run the whole pipeline on this machine (broker, API, producers, Parquet consumer, report)",
    "produce": "stream HTTP NDJSON endpoints into Kafka topics, exactly once across restarts",
    "consume": "consume Kafka topics with a Spark consumer and write them (Parquet, console, ...)",
    "query": "SQL over the Iceberg and Parquet tables (DuckDB; --engine spark or trino)",
    "admin": "create, delete, list and describe Kafka topics; show the settings",
    "broker": "start, stop or inspect the local Kafka broker (or cluster)",
    "api": "serve the JSON Lines files of the data directory as HTTP streams",
    "game-api": "serve the game demo's API; each action is logged to Kafka before it is answered",
    "game-load": "simulate players against the game API and report requests/s",
    "bench": "measure throughput and latency against a reference (from a source checkout)",
    "postgres": "start, stop or inspect the local PostgreSQL server (or check the configured one)",
    "tables": "Iceberg tables: list, describe, history, compact, expire",
    "trino": "start, stop or inspect the local Trino 476 over the Iceberg tables (query --engine trino)",
    "dashboard": "the live dashboard of the production-line tables and the pipeline's health (127.0.0.1)",
    "production-line": "the production-line demo: Kafka, PostgreSQL, API, producer, consumer and dashboard",
}
