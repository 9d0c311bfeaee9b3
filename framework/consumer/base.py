"""ConsumerSparkABC: Kafka topics -> Spark Structured Streaming -> a writer, declared in a few lines.

A consumer is a name, topics, a schema and a writer::

    from framework.consumer.base import ConsumerSparkABC
    from framework.sinks import ParquetWriter

    class Metrics(ConsumerSparkABC):
        name = "metrics-parquet"
        topics = ["metrics"]
        schema = "id INT NOT NULL, time TIMESTAMP, val DOUBLE"
        writer = ParquetWriter()

    summary = Metrics().run(mode="bounded")      # everything in Kafka now, then stop
    print(summary.text())

The class registers itself in :data:`CONSUMERS` under its ``name`` when its body
runs; ``python cmd/consume_cmd.py metrics-parquet`` then finds it (with
``--module`` or the ``pipeline.consumers`` entry-point group for user packages).
"""
from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Sequence, cast

from framework.consumer.declaration import validate_declaration
from framework.errors import ConsumerError, TopicError
from framework.log import get_logger
from framework.consumer.parsing import (SchemaLike, count_parsed, kafka_frame, observe_counts, observed_counts,
                                        parse_records, quarantine_rows, resolve_schema, split_parsed, valid_rows)
from framework.consumer.progress import (BatchLedger, ConsumerSummary, ProgressTracker, TopicSummary,
                                         check_topic_identity, checkpoint_is_fresh, committed_offsets, lag,
                                         planned_records)
from framework.consumer.queries import QueryGroup, first_line
from framework.consumer.parsing import required_kept
from framework.consumer.values import DEFAULT_YEARS, ValueRules
from framework.registry import Registry
from framework.consumer.routing import Routing, parse_routed, route_tables, split_routed, write_routed
from framework.settings import Settings
from framework.sinks import ForeachBatchWriter, planning

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

    from framework.admin import KafkaAdmin

log = get_logger("consumer")

#: every concrete consumer, by name
CONSUMERS: Registry["ConsumerSparkABC"] = Registry("consumer", "pipeline.consumers")
FETCH_MAX_WAIT_MS = 50
#: records one poll() of Spark's Kafka consumer may return (Kafka's default is 500). Kafka's consumer
#: documentation: it "does not impact the underlying fetching behavior", the records of each fetch are
#: cached and handed out poll by poll, so memory stays bounded by the fetch sizes. With 500, a bounded run
#: of 300,000 records took 1.75 to 2.0 s and with 10,000 1.45 to 1.6 s (python cmd/bench_cmd.py --quick
#: --only consume; docs/consumers.md).
MAX_POLL_RECORDS = 10_000
MODES = ("continuous", "bounded")


class ConsumerSparkABC:
    """Base of the Spark consumers: subclass it and declare four class attributes.

    ``name``
        How commands find the consumer (letters, digits, ``.``, ``_``, ``-``);
        also the checkpoint directory, ``<checkpoint_root>/<name>/<topic>``.
    ``topics``
        List of Kafka topics, consumed concurrently: one streaming query per
        topic, each with its own checkpoint, so topics never wait for each other.
    ``schema``
        A pyspark ``StructType`` or a DDL string (``"id INT NOT NULL, val DOUBLE"``),
        or a dict ``{topic: schema}`` when the topics differ. A field declared
        NOT NULL (``nullable=False``) is required. See :mod:`framework.consumer.parsing`
        for the output columns (record fields + ``kafka_*`` metadata) and the
        quarantine of records that do not fit.
    ``writer``
        An instance of a :class:`~framework.sinks.ForeachBatchWriter`:
        ``ParquetWriter()``, ``ConsoleWriter()`` or your own.

    Optional: ``fail_on_data_loss`` (default True: a query stops with an error
    when offsets it still has to read were deleted, e.g. by retention),
    ``route_field`` + ``routes`` (split one topic into several tables by the value
    of a field, e.g. ``route_field = "kind"``, ``routes = {"created": "orders",
    "paid": "payments"}``; ``schema`` then holds one schema per table, see
    :mod:`framework.consumer.routing` for an example) and the one override point
    :meth:`transform` (valid rows -> rows to write).

    Lifecycle (the template method :meth:`run`): check Kafka and the topics,
    build or reuse the SparkSession, start one query per topic (``startingOffsets``,
    ``maxOffsetsPerTrigger`` and the trigger come from :class:`Settings`), log a
    line per micro-batch with the consumer lag, stop on :meth:`stop`, a timeout
    or (bounded mode) when everything available was processed, and return a
    :class:`~framework.consumer.progress.ConsumerSummary`.

    Contract: nothing connects at import or in ``__init__``; ``spark=`` and
    ``admin=`` may be injected. A declaration error raises
    :class:`~framework.errors.DeclarationError` when the class body runs; a failed
    query raises :class:`~framework.errors.ConsumerError` from :meth:`run`, after
    the other topics' queries were stopped. Abstract intermediate bases set
    ``abstract = True`` in their body and are not registered.
    """

    abstract: ClassVar[bool] = True
    name: ClassVar[str]
    topics: ClassVar[Sequence[str]]
    schema: ClassVar[SchemaLike | Mapping[str, SchemaLike]]
    writer: ClassVar[ForeachBatchWriter]
    fail_on_data_loss: ClassVar[bool] = True
    route_field: ClassVar[str | None] = None
    routes: ClassVar[Mapping[str, str] | None] = None
    #: ``{field path: "s" | "ms" | "us"}``: TIMESTAMP fields that may hold epoch numbers (docs/parse-contract.md)
    timestamp_units: ClassVar[Mapping[str, str]] = {}
    #: inclusive years a TIMESTAMP or DATE value must fall in; others are quarantined
    timestamp_years: ClassVar[tuple[int, int]] = DEFAULT_YEARS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False) or inspect.isabstract(cls):
            return
        validate_declaration(cls)
        CONSUMERS.register(cls.name, cls)

    def __init__(self, settings: Settings | None = None, *, spark: "SparkSession | None" = None,
                 admin: "KafkaAdmin | None" = None, max_offsets_per_trigger: int | None = None) -> None:
        """No I/O: Spark and the Kafka admin client are built on first use (or injected).

        ``max_offsets_per_trigger``: None uses ``settings.max_offsets_per_trigger``;
        0 lifts the limit (a bounded run then reads everything in one batch).
        """
        self.settings = settings or Settings.from_env()
        limit = self.settings.max_offsets_per_trigger if max_offsets_per_trigger is None else max_offsets_per_trigger
        if limit < 0:
            raise ConsumerError(f"max_offsets_per_trigger={limit} is not valid; use a positive number, "
                                "or 0 for no limit.")
        self.max_offsets_per_trigger: int = limit
        self.bound_writer: ForeachBatchWriter = type(self).writer._bind(self.settings, self.name)
        self._spark = spark
        self._owns_spark = spark is None
        self._spark_configured = False
        self._admin = admin
        self._owns_admin = admin is None
        self._stop_event = threading.Event()
        self._schemas: dict[str, Any] = {}
        self._resolved_routing: Routing | None = None
        self._rows_by_table: dict[tuple[str, int], int] = {}  # (route table, batch id) -> rows written
        self._table_lock = threading.Lock()

    # ------------------------------------------------------------------ override point
    def transform(self, df: "DataFrame", topic: str) -> "DataFrame":
        """Valid rows of one micro-batch -> the rows handed to the writer (identity by default).

        ``topic`` is the route table instead when the consumer declares ``routes``.
        """
        return df

    # ------------------------------------------------------------------ resources
    @property
    def spark(self) -> "SparkSession":
        """The SparkSession (built from settings on first use unless injected)."""
        if self._spark is None:
            from framework.spark import build_spark_session

            self._spark = build_spark_session(self.settings, app_name=f"consumer-{self.name}",
                                              extra_conf=self.bound_writer.spark_conf)
        if not self._spark_configured:  # an injected session gets the writer's runtime settings too
            for key, value in self.bound_writer.spark_conf.items():
                self._spark.conf.set(key, value)
            self._spark_configured = True
        return self._spark

    @property
    def admin(self) -> "KafkaAdmin":
        """Kafka admin client (for topic checks and the final lag), connected on first use."""
        if self._admin is None:
            from framework.admin import KafkaAdmin

            self._admin = KafkaAdmin(self.settings)
        return self._admin

    def close(self) -> None:
        """Stop what this consumer built itself (the SparkSession, the admin client)."""
        if self._owns_admin and self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._owns_spark and self._spark is not None:
            self._spark.stop()
            self._spark = None
            self._spark_configured = False

    def __enter__(self) -> "ConsumerSparkABC":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ facts
    @classmethod
    def describe(cls, settings: Settings | None = None) -> str:
        """One line: name, topics and writer (``consume_cmd.py --list``)."""
        writer = cls.writer._bind(settings, cls.name) if settings else cls.writer
        routes = f"  routes: {cls.route_field} -> {', '.join(route_tables(cls.routes))}" if cls.routes else ""
        return f"{cls.name:<16} topics: {', '.join(cls.topics):<28} writer: {writer.describe()}{routes}"

    def checkpoint_path(self, topic: str) -> Path:
        """``<checkpoint_root>/<consumer name>/<topic>``."""
        return Path(self.settings.checkpoint_root) / self.name / topic

    def _schema_for(self, topic: str) -> Any:
        """The resolved ``StructType`` of ``topic`` (a DDL string is parsed with Spark); not for routing consumers."""
        if self.routes is not None:
            raise ConsumerError(f"Consumer {self.name!r} routes {topic!r} into tables with one schema each; "
                                "its schemas are per table (see routes).")
        if topic not in self._schemas:
            declared = self.schema[topic] if isinstance(self.schema, Mapping) else self.schema
            owner = f"{type(self).__qualname__}.schema" + (f"[{topic!r}]" if isinstance(self.schema, Mapping) else "")
            self._schemas[topic] = resolve_schema(declared, self.spark if isinstance(declared, str) else None, owner)
        return self._schemas[topic]

    def _routing(self) -> Routing | None:
        """The resolved routing (one ``StructType`` per table), or None when the consumer does not route."""
        if self.routes is None or self.route_field is None:
            return None
        if self._resolved_routing is None:
            owner = f"{type(self).__qualname__}.schema"
            per_table = cast(Mapping[str, SchemaLike], self.schema)  # checked at declaration
            schemas = {table: resolve_schema(per_table[table], self.spark if isinstance(per_table[table], str)
                                             else None, f"{owner}[{table!r}]")
                       for table in route_tables(self.routes)}
            self._resolved_routing = Routing(self.route_field, dict(self.routes), schemas)
        return self._resolved_routing

    def _parse(self, df: "DataFrame", topic: str) -> "DataFrame":
        """:func:`~framework.consumer.parsing.parse_records` of a Kafka frame.

        Or :func:`~framework.consumer.routing.parse_routed` for a routed consumer.
        """
        routing = self._routing()
        frame = kafka_frame(df)
        rules = self.value_rules()
        return parse_routed(frame, routing, rules) if routing else parse_records(frame, self._schema_for(topic), rules)

    @classmethod
    def value_rules(cls) -> ValueRules:
        """The declared timestamp units and years (:class:`~framework.consumer.values.ValueRules`)."""
        low, high = cls.timestamp_years
        return ValueRules(dict(cls.timestamp_units), (low, high))

    # ------------------------------------------------------------------ one batch
    def _process_batch(self, df: "DataFrame", batch_id: int, topic: str) -> tuple[int, int]:
        """Parse, split and write one batch of Kafka records: (rows written, rows quarantined).

        ``df`` has the columns of Spark's Kafka source (``key``, ``value``, ``topic``,
        ``partition``, ``offset``, ``timestamp``); a static frame works too
        (see :func:`framework.testing.consumer.run_batch`).
        """
        return self._write_parsed(self._parse(df, topic), batch_id, topic)

    def _write_parsed(self, parsed: "DataFrame", batch_id: int, topic: str) -> tuple[int, int]:
        """The ``foreachBatch`` body: count, split and hand both parts to the writer.

        ``parsed`` is a :meth:`_parse` result (the streaming plan parses, so each
        batch only plans the split); rows written = valid rows before
        :meth:`transform`. A routing consumer writes each table that has rows
        (``write_batch(rows, batch_id, table)``), then the quarantine.

        When the writer declares :attr:`~framework.sinks.ForeachBatchWriter.writes_every_row`
        (``ParquetWriter`` does), the batch is read from Kafka, parsed, counted and
        written in one pass: the rows are counted by an observation on the frame
        as it is written. The quarantine, if the count finds bad rows, reads the
        batch again (the same offsets). Other writers get a cached frame, counted
        first, and see only non-empty frames.
        """
        routing = self._routing()
        if routing is not None:
            return self._write_routed(parsed, batch_id, topic, routing)
        writer = self.bound_writer
        if writer.writes_every_row:
            observation, observed = observe_counts(parsed)
            writer.write_batch(self.transform(valid_rows(observed), topic), batch_id, topic)
            written, quarantined = observed_counts(observation)
            if quarantined:
                writer.write_quarantine(quarantine_rows(parsed), batch_id, topic)
            return written, quarantined
        parsed = parsed.persist()
        try:
            written, quarantined = count_parsed(parsed)
            valid, bad = split_parsed(parsed)
            if written:
                writer.write_batch(self.transform(valid, topic), batch_id, topic)
            if quarantined:
                writer.write_quarantine(bad, batch_id, topic)
        finally:
            parsed.unpersist()
        return written, quarantined

    def _write_routed(self, parsed: "DataFrame", batch_id: int, topic: str, routing: Routing) -> tuple[int, int]:
        counts, quarantined = write_routed(parsed, routing, self.bound_writer, self.transform, batch_id, topic)
        with self._table_lock:
            self._rows_by_table.update({(table, batch_id): rows for table, rows in counts.items()})
        return sum(counts.values()), quarantined

    def _table_rows(self) -> dict[str, int]:
        """Rows written per route table in the current or last :meth:`run` (empty when the consumer does not route)."""
        with self._table_lock:
            totals = {table: 0 for table in route_tables(self.routes or {})}
            for (table, _), rows in self._rows_by_table.items():
                totals[table] = totals.get(table, 0) + rows
        return totals

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask :meth:`run` to stop the queries and return (thread- and signal-handler-safe)."""
        self._stop_event.set()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def run(self, mode: str = "continuous", timeout: float | None = None) -> ConsumerSummary:
        """Consume every topic until stopped (``continuous``) or until done (``bounded``).

        ``continuous``: a micro-batch every ``settings.trigger_seconds``, until
        :meth:`stop` or ``timeout`` seconds. ``bounded``: Spark's
        ``availableNow`` trigger processes what is in Kafka when the run starts
        (in several batches of ``max_offsets_per_trigger``), then stops. Blocks.
        """
        if mode not in MODES:
            raise ConsumerError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
        self._stop_event.clear()
        with self._table_lock:
            self._rows_by_table.clear()
        try:
            self._check_topics(bounded=mode == "bounded")
            _ = self.spark  # built (or configured) before the clock starts
            ledger = BatchLedger()
            tracker = ProgressTracker(ledger)
            started = time.monotonic()
            stopped = self._run_queries(mode, ledger, tracker, timeout, started)
            elapsed = time.monotonic() - started
            return self._summary(mode, elapsed, stopped, ledger, tracker)
        finally:
            if self._owns_admin and self._admin is not None:
                self._admin.close()
                self._admin = None

    # ------------------------------------------------------------------ internals
    def _run_queries(self, mode: str, ledger: BatchLedger, tracker: ProgressTracker, timeout: float | None,
                     started: float) -> bool:
        """Start one query per topic, wait for them, stop them; True if stopped before done."""
        group = QueryGroup(self.name, self._stop_event, checkpoint=self.checkpoint_path,
                           trace_dir=Path(self.settings.state_dir), settings=self.settings)
        listener = tracker.listener()
        self.spark.streams.addListener(listener)
        try:
            for topic in self.topics:
                if self._stop_event.is_set():
                    return True
                group.add(topic, self._start_query(topic, mode, group.guard(topic, self._batch_body(topic, ledger))))
                tracker.watch(group.queries[topic].id, topic)
            log.info("Consumer {} started {} quer{} ({} mode, maxOffsetsPerTrigger {})", self.name,
                     len(group.queries), "y" if len(group.queries) == 1 else "ies", mode,
                     self.max_offsets_per_trigger or "unlimited")
            return group.wait(timeout, started)
        finally:
            try:
                group.stop()
            finally:
                self.spark.streams.removeListener(listener)
                for topic, query in group.queries.items():
                    tracker.sweep(topic, query)

    def _check_topic_identity(self, topic: str, checkpoint: Path) -> None:
        """:func:`~framework.consumer.progress.check_topic_identity` with the broker's topic id."""
        try:
            topic_id = self.admin.topic_id(topic)
        except TopicError:
            return  # not created yet: the checkpoint records the id on a start that finds the topic
        check_topic_identity(checkpoint, topic, topic_id if isinstance(topic_id, str) else None)

    def _check_topics(self, bounded: bool) -> None:
        existing = set(self.admin.list_topics())
        missing = [t for t in self.topics if t not in existing]
        if not missing:
            return
        where = self.settings.bootstrap_servers
        if bounded:
            raise ConsumerError(
                f"Consumer {self.name!r} reads topic(s) {', '.join(missing)}, which do not exist at {where}; "
                "create them (`python cmd/admin_cmd.py create <topic>`) or run a producer first.")
        log.warning("Topic(s) {} do not exist at {} yet; the consumer waits for them", ", ".join(missing), where)

    def _reader(self, topic: str) -> "DataFrame":
        reader = (self.spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", self.settings.bootstrap_servers)
                  .option("subscribe", topic)
                  .option("startingOffsets", self.settings.starting_offsets)
                  .option("failOnDataLoss", str(bool(self.fail_on_data_loss)).lower())
                  # a micro-batch reads offset ranges that exist: a broker holding a fetch past the
                  # end for the default 500 ms only delays the batch (seen: +0.8 s after a pause)
                  .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
                  .option("kafka.max.poll.records", str(MAX_POLL_RECORDS)))
        if self.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", str(self.max_offsets_per_trigger))
        return reader.load()

    def _start_query(self, topic: str, mode: str, function: Callable[["DataFrame", int], None]) -> "StreamingQuery":
        routing = self._routing()  # a bad DDL string fails here, before anything starts
        checkpoint = self.checkpoint_path(topic)
        self._check_topic_identity(topic, checkpoint)
        if routing is None:
            self.bound_writer.declare_schema(topic, self._schema_for(topic))
            self.bound_writer.prepare(topic, fresh_checkpoint=checkpoint_is_fresh(checkpoint))
        else:
            for table, table_schema in routing.schemas.items():
                self.bound_writer.declare_schema(table, table_schema)
            self.bound_writer.prepare_routes(topic, routing.tables, fresh_checkpoint=checkpoint_is_fresh(checkpoint))
        parsed = self._parse(self._reader(topic), topic)
        schemas, quarantines = self._output_schemas(parsed, topic, routing)
        self.bound_writer.prepare_tables(self.spark, schemas, quarantines, checkpoint_is_fresh(checkpoint))
        stream = parsed.writeStream.queryName(f"{self.name}:{topic}")
        stream = stream.option("checkpointLocation", str(checkpoint)).foreachBatch(function)
        if mode == "bounded":
            stream = stream.trigger(availableNow=True)
        else:
            stream = stream.trigger(processingTime=f"{int(self.settings.trigger_seconds * 1000)} milliseconds")
        try:
            return stream.start()
        except Exception as exc:
            raise ConsumerError(f"Could not start the query of consumer {self.name!r} for topic {topic!r} "
                                f"(checkpoint {checkpoint}): {first_line(exc)}") from exc

    def _output_schemas(self, parsed: "DataFrame", topic: str,
                        routing: Routing | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """({write_batch topic argument: schema of its rows}, {write_quarantine topic argument: schema})."""
        if routing is None:
            valid, bad = split_parsed(parsed)
            return {topic: required_kept(self.transform(valid, topic).schema, self._schema_for(topic))}, \
                {topic: bad.schema}
        tables, bad = split_routed(parsed, routing)
        return ({table: required_kept(self.transform(rows, table).schema, routing.schemas[table])
                 for table, rows in tables.items()}, {topic: bad.schema})

    def _batch_body(self, topic: str, ledger: BatchLedger) -> Callable[["DataFrame", int], None]:
        checkpoint = self.checkpoint_path(topic)

        def process(df: "DataFrame", batch_id: int) -> None:
            with planning(planned_records(checkpoint, batch_id)):
                written, quarantined = self._write_parsed(df, batch_id, topic)
            ledger.record(topic, batch_id, written, quarantined)
        return process

    def _summary(self, mode: str, elapsed: float, stopped: bool, ledger: BatchLedger,
                 tracker: ProgressTracker) -> ConsumerSummary:
        summary = ConsumerSummary(consumer=self.name, mode=mode, elapsed_s=elapsed, stopped=stopped)
        for topic in self.topics:
            written, quarantined, batches = ledger.totals(topic)
            summary.topics[topic] = TopicSummary(
                topic=topic, rows_written=written, rows_quarantined=quarantined, batches=batches,
                lag=self._final_lag(topic, tracker),
                output_path=None if self.routes else self.bound_writer.output_path(topic),
                quarantine_path=self.bound_writer.quarantine_path(topic))
        summary.tables = self._table_rows()
        for table, rows in summary.tables.items():
            where = self.bound_writer.output_path(table)
            log.info("{} -> table {}: {} rows written{}", self.topics[0], table, rows, f" ({where})" if where else "")
        return summary

    def _final_lag(self, topic: str, tracker: ProgressTracker) -> int | None:
        """Latest offsets in Kafka now minus the offsets of the last committed batch."""
        try:
            latest = self.admin.end_offsets(topic)
        except Exception as exc:  # noqa: BLE001 - the lag is informative; fall back to Spark's view
            log.debug("Could not read the end offsets of {}: {}", topic, exc)
            return tracker.latest_lag.get(topic)
        processed = committed_offsets(self.checkpoint_path(topic)).get(topic, {})
        return lag(processed, latest)
