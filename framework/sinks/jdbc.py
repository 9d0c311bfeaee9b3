"""PostgreSQL tables written exactly once through Spark's JDBC writer: :class:`JdbcWriter`, :class:`PostgresWriter`.

Exactly-once rule (proved by ``tests/integration/test_jdbc_faults.py``)
-------------------------------------------------------------------------
For each micro-batch of a topic, on the driver:

1. if the ledger ``pipeline_jdbc_ledger`` holds ``(consumer, "topic/table", batch_id)``
   the batch was applied before (a replay after a crash): it is skipped;
2. ``TRUNCATE`` the table's unlogged staging table (``_stg_<table>_<topic>``), then Spark's
   JDBC writer (PostgreSQL driver ``org.postgresql:postgresql``) appends the batch to it
   in parallel;
3. one transaction: apply the staging table to the target (``INSERT ... SELECT``, or
   ``INSERT ... ON CONFLICT (key) DO UPDATE`` for ``insert_mode="upsert"``), insert the
   ledger row (``ON CONFLICT DO NOTHING``; no row inserted means another attempt got
   there first, so everything rolls back), merge each declared aggregation's partial
   aggregate by key (:mod:`framework.sinks.aggregates`), count the batch in
   ``pipeline_jdbc_health``; commit.

A crash before the commit leaves nothing applied and Spark replays the batch
(same id, same offsets) because its checkpoint commit comes after ``foreachBatch``
returns; a crash after the commit leaves the ledger row, so the replay is step 1.
Either way every Kafka record is applied once. Quarantined records go to
``<table>_quarantine`` by the same rule (their own ledger row). An unreachable
server raises :class:`~framework.errors.PostgresError` within ~10 s, which fails
the query before its checkpoint commit: nothing is lost, the next run resumes.

Tables: created from the batch's schema when missing (``auto_create``, types in
:mod:`framework.sinks.jdbc_sql`, NOT NULL kept, ``pk_fields`` as primary key); an
existing table that no longer fits is a one-sentence
:class:`~framework.errors.SinkSchemaError` before anything is written. Each table
is owned by one consumer (``pipeline_jdbc_tables``): another consumer's table is
refused when the query starts, and so is a new checkpoint for a table whose ledger
already has batches (batch ids would restart at 0).

Names follow Kafka Connect's JDBC sink: ``insert_mode`` (``insert`` | ``upsert``),
``pk_fields``, ``auto_create``.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from framework.consumer.parsing import METADATA_COLUMNS
from framework.consumer.progress import batch_end_offsets
from framework.errors import ConsumerError, PostgresError, SinkSchemaError
from framework.local.postgres import PostgresTarget, postgres_target
from framework.log import get_logger
from framework.sinks import jdbc_sql as q
from framework.sinks.aggregates import Aggregation
from framework.sinks.base import QUARANTINE_SUFFIX, ForeachBatchWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = get_logger("jdbc")

INSERT_MODES = ("insert", "upsert")
ORDER_COLUMNS = ("kafka_timestamp", "kafka_offset")  # the last row of a key in a batch wins an upsert
REQUIRED_METADATA = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")  # never null
CONNECT_TIMEOUT = 10  # seconds, for psycopg and the JDBC driver


def check_declaration(owner: str, table: str | None, insert_mode: str, pk_fields: Sequence[str],
                      aggregations: Sequence[Aggregation]) -> None:
    """Raise :class:`SinkSchemaError` (one sentence naming ``owner``) for a writer declared wrongly."""
    if insert_mode not in INSERT_MODES:
        raise SinkSchemaError(f"{owner}: insert_mode={insert_mode!r} is not known; "
                              f"use one of {', '.join(INSERT_MODES)}.")
    if isinstance(pk_fields, str):
        raise SinkSchemaError(f"{owner}: pk_fields={pk_fields!r} is a string; "
                              f"give a list, e.g. pk_fields=[{pk_fields!r}].")
    if insert_mode == "upsert" and not pk_fields:
        raise SinkSchemaError(f"{owner}: insert_mode='upsert' needs pk_fields, the key columns to upsert by "
                              "(e.g. pk_fields=['id']).")
    if len(set(pk_fields)) != len(pk_fields):
        raise SinkSchemaError(f"{owner}: pk_fields={list(pk_fields)!r} names a column twice; name each once.")
    names = [a.table for a in aggregations]
    for agg in aggregations:
        if not isinstance(agg, Aggregation):
            raise SinkSchemaError(f"{owner}: aggregations holds {agg!r}; use Aggregation(...) from "
                                  "framework.sinks.aggregates.")
    dup = {n for n in names if names.count(n) > 1} | ({table} & set(names) if table else set())
    if dup:
        raise SinkSchemaError(f"{owner}: table {sorted(dup)[0]!r} is declared twice (raw table or aggregations); "
                              "give each its own name.")


def collect_partials(
        partials: Sequence[tuple[Aggregation, "DataFrame"]]) -> list[tuple[Aggregation, list[tuple[Any, ...]]]]:
    """Every aggregation's partial rows, computed by ONE Spark job (a union of the partials as JSON).

    Values come back as JSON scalars (timestamps as ISO text with microseconds,
    decimals and doubles as exact decimal text) and PostgreSQL casts them to the
    column types when they are merged.
    """
    if not partials:
        return []
    from functools import reduce

    from pyspark.sql import functions as F

    options = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
               "timestampNTZFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
               "ignoreNullFields": "false"}
    frames = [p.select(F.lit(i).alias("a"), F.to_json(F.struct(*[F.col(c) for c in p.columns]), options).alias("r"))
              for i, (_, p) in enumerate(partials)]
    rows: list[list[tuple[Any, ...]]] = [[] for _ in partials]
    for row in reduce(lambda x, y: x.unionByName(y), frames).collect():
        agg = partials[row["a"]][0]
        values = json.loads(row["r"], parse_float=Decimal)
        rows[row["a"]].append(tuple(values.get(c) for c in agg.columns()))
    return [(agg, rows[i]) for i, (agg, _) in enumerate(partials)]


def staging_name(table: str, topic: str) -> str:
    """The unlogged staging table of ``table`` for ``topic`` (hashed when too long)."""
    name = f"_stg_{table}_{topic}".replace(".", "_").replace("-", "_")
    if len(name.encode()) > q.MAX_IDENTIFIER:
        name = "_stg_" + hashlib.sha1(f"{table}\0{topic}".encode()).hexdigest()[:16]
    return name


class JdbcWriter(ForeachBatchWriter):
    """Each topic into a PostgreSQL table, exactly once (see the module docstring for the rule).

    Declared by arguments or as class attributes of a subclass:

    ``table``           target table (default: the topic; ``tables={topic: table}`` for several topics)
    ``insert_mode``     ``"insert"`` (append) or ``"upsert"`` (by ``pk_fields``, last row of a key wins)
    ``pk_fields``       key columns: the primary key of a created table, the conflict target of an upsert
    ``auto_create``     create a missing table from the batch's schema (default True)
    ``aggregations``    :class:`~framework.sinks.aggregates.Aggregation` tables kept exact from the same rows
    ``raw``             False to keep only the aggregations, not the rows themselves
    ``url``             ``postgresql://user:password@host:port/db`` (default: ``PIPELINE_POSTGRES_URL``, else
                        the local server of the embedded default)

    Minimal use::

        class Orders(ConsumerSparkABC):
            name, topics, schema = "orders-pg", ["orders"], "id BIGINT NOT NULL, amount DECIMAL(12,2)"
            writer = PostgresWriter("orders", insert_mode="upsert", pk_fields=["id"])

    Raises :class:`SinkSchemaError` when declared wrongly (at declaration), when a
    batch does not fit its table or lacks a key column (first batch, before any
    write), :class:`ConsumerError` for a table owned by another consumer (query
    start), :class:`PostgresError` when the server cannot be reached.
    """

    table: str | None = None
    insert_mode: str = "insert"
    pk_fields: Sequence[str] = ()
    auto_create: bool = True
    aggregations: Sequence[Aggregation] = ()
    raw: bool = True
    url: str | None = None
    #: rows per JDBC batch insert of Spark's writer (its ``batchsize`` option)
    jdbc_batch_size: ClassVar[int] = 10_000
    spark_conf: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declaration(cls.__qualname__, cls.table, cls.insert_mode, tuple(cls.pk_fields), tuple(cls.aggregations))

    def __init__(self, table: str | None = None, *, tables: Mapping[str, str] | None = None,
                 insert_mode: str | None = None, pk_fields: Sequence[str] | None = None,
                 auto_create: bool | None = None, aggregations: Sequence[Aggregation] | None = None,
                 raw: bool | None = None, url: str | None = None) -> None:
        if table is not None:
            self.table = table
        if insert_mode is not None:
            self.insert_mode = insert_mode
        if pk_fields is not None:
            if isinstance(pk_fields, str):
                check_declaration(type(self).__name__, table, self.insert_mode, pk_fields, ())
            self.pk_fields = tuple(pk_fields)
        if auto_create is not None:
            self.auto_create = auto_create
        if aggregations is not None:
            self.aggregations = tuple(aggregations)
        if raw is not None:
            self.raw = raw
        if url is not None:
            PostgresTarget.parse(url)
            self.url = url
        self.tables = dict(tables or {})
        check_declaration(type(self).__name__, self.table, self.insert_mode, tuple(self.pk_fields),
                          tuple(self.aggregations))
        if not self.raw and not self.aggregations:
            raise SinkSchemaError(f"{type(self).__name__}: raw=False keeps nothing without aggregations; "
                                  "declare aggregations or keep raw=True.")
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _bind(self, settings: Any, consumer_name: str) -> "JdbcWriter":
        bound = super()._bind(settings, consumer_name)
        assert isinstance(bound, JdbcWriter)  # a copy of self
        bound._ready = set()  # per consumer instance: tables checked in this run
        bound._lock = threading.Lock()
        return bound

    # ------------------------------------------------------------------ facts
    @property
    def target(self) -> PostgresTarget:
        """The database written to."""
        return PostgresTarget.parse(self.url) if self.url else postgres_target(self.settings)

    def describe(self) -> str:
        where = self.target.safe_url if self._settings or self.url else "PIPELINE_POSTGRES_URL"
        mode = self.insert_mode + (f" by {', '.join(self.pk_fields)}" if self.insert_mode == "upsert" else "")
        aggs = f", aggregates {', '.join(a.table for a in self.aggregations)}" if self.aggregations else ""
        return f"{type(self).__name__}({where}, {mode}{aggs}, exactly once)"

    def table_name(self, topic: str) -> str:
        return self.tables.get(topic) or self.table or topic

    def quarantine_table(self, topic: str) -> str:
        return f"{self.table_name(topic)}{QUARANTINE_SUFFIX}"

    def quarantine_path(self, topic: str) -> Path | None:
        return None  # quarantined rows go to the <table>_quarantine table

    def owned_tables(self, topic: str) -> list[str]:
        """Every table this writer writes for ``topic``: raw, aggregations, quarantine."""
        raw = [self.table_name(topic)] if self.raw else []
        return [*raw, *(a.table for a in self.aggregations), self.quarantine_table(topic)]

    def connect(self) -> Any:
        """A psycopg connection to :attr:`target` (:class:`PostgresError` within ~10 s when unreachable)."""
        return self.target.connect(timeout=CONNECT_TIMEOUT)

    # ------------------------------------------------------------------ start
    def prepare(self, topic: str, fresh_checkpoint: bool) -> None:
        """Check the key, create the sink's metadata tables, claim this topic's tables, refuse a restart at batch 0."""
        self._check_key(topic)
        self._claim(topic, self.owned_tables(topic), fresh_checkpoint)

    def _check_key(self, topic: str) -> None:
        """A key column that is neither a declared field nor a ``kafka_*`` column is an error at start."""
        schema = self.declared_schema(topic)
        if schema is None or not self.pk_fields:
            return
        names = [*schema.fieldNames(), *METADATA_COLUMNS]
        for key in self.pk_fields:
            if key not in names:
                raise SinkSchemaError(f"Key column {key!r} of {type(self).__name__} is not among the rows of topic "
                                      f"{topic!r} ({', '.join(names)}); fix pk_fields or the consumer's schema.")

    def _columns(self, df: "DataFrame", topic: str) -> list[q.Column]:
        """The batch's columns, NOT NULL taken from the declared schema (parsing makes every field nullable)."""
        schema = self.declared_schema(topic)
        required = {f.name for f in schema.fields if not f.nullable} if schema is not None else set()
        required |= set(REQUIRED_METADATA)
        return [q.Column(c.name, c.type, c.not_null or c.name in required) for c in q.columns_of(df.schema)]

    def prepare_routes(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        self._claim(topic, [*tables, *(a.table for a in self.aggregations), self.quarantine_table(topic)],
                    fresh_checkpoint)

    def _claim(self, topic: str, tables: Sequence[str], fresh_checkpoint: bool) -> None:
        with self.connect() as conn:
            for ddl in q.metadata_ddl():
                conn.execute(ddl)
            conn.commit()
            for table in tables:
                row = conn.execute(f"SELECT consumer FROM {q.OWNERS_TABLE} WHERE table_name = %s", (table,)).fetchone()
                if row and row[0] != self.consumer_name:
                    raise ConsumerError(
                        f"Table {table!r} in {self.target.safe_url} is written by consumer {row[0]!r}, not "
                        f"{self.consumer_name!r}; give this consumer's writer another table name, or drop the table "
                        f"and its row in {q.OWNERS_TABLE} to hand it over.")
                if row is None:
                    conn.execute(f"INSERT INTO {q.OWNERS_TABLE} (table_name, consumer, topic, role) "
                                 "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                 (table, self.consumer_name, topic, self._role(topic, table)))
            done = conn.execute(f"SELECT count(*) FROM {q.LEDGER_TABLE} WHERE consumer = %s AND target LIKE %s",
                                (self.consumer_name, f"{topic}/%")).fetchone()[0]
            conn.commit()
        if fresh_checkpoint and done:
            raise ConsumerError(
                f"The ledger of {self.target.safe_url} holds {done} applied batch(es) of consumer "
                f"{self.consumer_name!r} for topic {topic!r} but its checkpoint is new, so batch ids would restart "
                f"at 0 and be skipped; drop its tables and DELETE FROM {q.LEDGER_TABLE} WHERE consumer = "
                f"'{self.consumer_name}' to rebuild from Kafka, or restore the checkpoint.")

    def _role(self, topic: str, table: str) -> str:
        if table == self.quarantine_table(topic):
            return "quarantine"
        return "aggregate" if table in {a.table for a in self.aggregations} else "rows"

    # ------------------------------------------------------------------ batches
    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        table = self.table_name(topic)
        self._apply(df, batch_id, topic, table if self.raw else None, self.aggregations, quarantine=False)

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        self._apply(df, batch_id, topic, self.quarantine_table(topic), (), quarantine=True)

    def _apply(self, df: "DataFrame", batch_id: int, topic: str, table: str | None,
               aggregations: Sequence[Aggregation], quarantine: bool) -> None:
        ledger_target = f"{topic}/{table or self.table_name(topic)}"
        t0 = time.monotonic()
        with self.connect() as conn:
            if conn.execute(q.ledger_has(), (self.consumer_name, ledger_target, batch_id)).fetchone():
                log.info("{} batch {} -> {}: applied before (ledger), skipped", topic, batch_id, ledger_target)
                return
            partials = self._prepare_tables(conn, df, topic, table, aggregations, quarantine)
            rows = df.count() if table is None else 0  # else counted by the apply (no Spark pass)
            if table is not None:
                staging = staging_name(table, topic)
                conn.execute(f"TRUNCATE {q.ident(staging)}")  # rows of an attempt that crashed before its commit
                conn.commit()
                self._stage(df, staging)
            merged = collect_partials(partials)
            end = batch_end_offsets(Path(self.settings.checkpoint_root) / self.consumer_name / topic, batch_id)
            with conn.transaction():
                if table is not None:
                    rows = self._apply_staged(conn, table, staging, df.columns)
                # one round trip from here to the commit: the ledger row, the aggregates' merges, the health row
                with conn.pipeline():
                    claimed = conn.execute(q.ledger_claim(), (self.consumer_name, ledger_target, batch_id, rows))
                    for agg, values in merged:
                        if values:
                            with conn.cursor() as cur:
                                cur.executemany(agg.merge_sql(), values)
                    conn.execute(q.health_upsert(), (self.consumer_name, topic, 0 if quarantine else 1,
                                                     0 if quarantine else rows, rows if quarantine else 0, batch_id,
                                                     rows, json.dumps(end) if end else None))
                if claimed.fetchone() is None:  # rolls the whole transaction back
                    raise ConsumerError(f"Batch {batch_id} of {ledger_target} was applied by another writer while "
                                        "this one staged it; run one instance of a consumer at a time.")
        log.info("{} batch {} -> {}: {} rows{} applied in {:.2f}s", topic, batch_id, ledger_target, rows,
                 f" + {len(merged)} aggregate(s)" if merged else "", time.monotonic() - t0)

    def _apply_staged(self, conn: Any, table: str, staging: str, columns: Sequence[str]) -> int:
        """Apply the staging table to ``table``; returns the number of rows staged.

        An append's count is the INSERT's own row count (no second scan of the
        staging table); an upsert keeps one row per key, so its staged rows are counted first.
        """
        if self._upserts(table):
            order = [c for c in ORDER_COLUMNS if c in columns]
            rows = int(conn.execute(f"SELECT count(*) FROM {q.ident(staging)}").fetchone()[0])
            conn.execute(q.apply_upsert(table, staging, columns, self.pk_fields, order))
            return rows
        return int(conn.execute(q.apply_insert(table, staging, columns)).rowcount)

    def _upserts(self, table: str) -> bool:
        return self.insert_mode == "upsert" and not table.endswith(QUARANTINE_SUFFIX)

    def _stage(self, df: "DataFrame", staging: str) -> None:
        """Spark's JDBC writer appends the batch to the staging table (in parallel, one connection per task)."""
        target = self.target
        props = {**target.jdbc_properties, "batchsize": str(self.jdbc_batch_size), "reWriteBatchedInserts": "true",
                 "connectTimeout": str(CONNECT_TIMEOUT), "loginTimeout": str(CONNECT_TIMEOUT),
                 "stringtype": "unspecified"}
        try:
            df.write.jdbc(target.jdbc_url, q.ident(staging), mode="append", properties=props)
        except Exception as exc:  # noqa: BLE001 - a Py4J/JVM error as one sentence
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise PostgresError(f"Writing the batch into {staging} at {target.safe_url} failed ({first}); "
                                "the batch was not applied and is replayed on the next run.") from None

    # ------------------------------------------------------------------ tables
    def _prepare_tables(self, conn: Any, df: "DataFrame", topic: str, table: str | None,
                        aggregations: Sequence[Aggregation], quarantine: bool) -> list[tuple[Aggregation, "DataFrame"]]:
        """Create or check the tables of this batch (once per run); the aggregations' partial plans."""
        partials = [(agg, agg.check_input(df)) for agg in aggregations]
        with self._lock:
            if table is not None and table not in self._ready:
                self._ensure_raw(conn, df, topic, table, quarantine)
                self._ready.add(table)
            for agg, partial in partials:
                if agg.table not in self._ready:
                    self._ensure_aggregate(conn, agg, partial)
                    self._ready.add(agg.table)
        return partials

    def _ensure_raw(self, conn: Any, df: "DataFrame", topic: str, table: str, quarantine: bool) -> None:
        columns = self._columns(df, topic) if not quarantine else q.columns_of(df.schema)
        key = () if quarantine else tuple(self.pk_fields)
        missing = [k for k in key if k not in df.columns]
        if missing:
            raise SinkSchemaError(f"Key column {missing[0]!r} of {type(self).__name__} is not among the rows of topic "
                                  f"{topic!r} ({', '.join(df.columns)}); fix pk_fields or the consumer's schema.")
        existing = conn.execute(q.describe_columns_query(), (table,)).fetchall()
        if not existing:
            if not self.auto_create:
                raise SinkSchemaError(f"Table {table!r} does not exist in {self.target.safe_url} and auto_create is "
                                      "off; create it, or set auto_create=True.")
            conn.execute(q.create_table(table, columns, key))
            log.info("Created table {} ({} columns{})", table, len(columns), f", key {', '.join(key)}" if key else "")
        else:
            q.check_fit(table, columns, existing)
            if self.insert_mode == "upsert" and key:
                have = [r[0] for r in conn.execute(q.primary_key_query(), (table,)).fetchall()]
                if sorted(have) != sorted(key):
                    raise SinkSchemaError(f"Table {table!r} has primary key ({', '.join(have) or 'none'}) but the "
                                          f"writer upserts by ({', '.join(key)}); make them the same.")
        staging = staging_name(table, topic)
        conn.execute(f"DROP TABLE IF EXISTS {q.ident(staging)}")
        conn.execute(q.create_staging(staging, table))
        conn.commit()

    def _ensure_aggregate(self, conn: Any, agg: Aggregation, partial: "DataFrame") -> None:
        columns = q.columns_of(partial.schema)
        existing = conn.execute(q.describe_columns_query(), (agg.table,)).fetchall()
        if not existing:
            if not self.auto_create:
                raise SinkSchemaError(f"Aggregate table {agg.table!r} does not exist and auto_create is off; "
                                      "create it, or set auto_create=True.")
            conn.execute(agg.create_table(columns))
            log.info("Created aggregate table {} (group by {})", agg.table, ", ".join(agg.key))
        else:
            q.check_fit(agg.table, columns, existing)
        conn.commit()


class PostgresWriter(JdbcWriter):
    """:class:`JdbcWriter` into the pipeline's PostgreSQL: ``PIPELINE_POSTGRES_URL``, else the local server.

    The local server is started by the embedded default (``pipeline postgres start``
    or a main job); the writer itself only connects. Minimal use::

        writer = PostgresWriter("events", aggregations=[Aggregation("per_zone", ["zone"], {"n": count()})])
    """
