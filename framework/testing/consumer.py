"""Test a consumer's schema and writer without a broker: static DataFrames shaped like Kafka's.

Minimal use in a user's pytest module::

    from framework.testing.consumer import local_spark, parse_values

    def test_my_schema():
        result = parse_values(MyConsumer, ['{"id": 1, "val": 2.5}', '{"val": "x"}'], spark=local_spark())
        assert result.rows[0]["val"] == 2.5
        assert result.reasons == ["missing required field 'id'; field 'val' expected double, got \\"x\\""]

- :func:`local_spark`: the active SparkSession, or a local one built by
  :func:`framework.spark.build_spark_session` (one JVM per test process).
- :func:`kafka_like_frame`: raw values -> a static frame with the columns of
  Spark's Kafka source (``key``, ``value``, ``topic``, ``partition``, ``offset``,
  ``timestamp``).
- :func:`parse_values`: raw values -> valid rows and quarantine rows, as dicts
  (for a routing consumer class also the rows of each table, ``result.tables``).
- :class:`RecordingWriter` and :func:`run_batch`: run a consumer's whole
  ``foreachBatch`` body (parse, split, transform, write) on a static frame.
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence, cast

from framework.consumer.parsing import SchemaLike, kafka_frame, resolve_schema, split_valid_invalid
from framework.consumer.routing import Routing, parse_routed, route_tables, split_routed
from framework.settings import Settings
from framework.sinks import ForeachBatchWriter

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from framework.consumer.base import ConsumerSparkABC

KAFKA_SOURCE_DDL = ("key binary, value binary, topic string, partition int, offset bigint, "
                    "timestamp timestamp, timestampType int")


def local_spark(settings: Settings | None = None, kafka_connector: bool = True) -> "SparkSession":
    """The active SparkSession, or a new ``local[2]`` one (with the Kafka connector) if there is none.

    Reusing the active session keeps one JVM per test process; the session is
    built like the framework's own, so later integration tests can reuse it.
    ``kafka_connector=False`` builds it without Spark's Kafka connector (static frames
    only: no Maven download), as a hermetic unit test wants.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from framework.spark import build_spark_session

    settings = settings or Settings.from_env().replace(spark_master="local[2]", spark_shuffle_partitions=2)
    return build_spark_session(settings, app_name="pipeline-tests", kafka_connector=kafka_connector)


def kafka_like_frame(spark: "SparkSession", values: Sequence[str | bytes | None], topic: str = "test",
                     partitions: int = 1, keys: Sequence[str | None] | None = None) -> "DataFrame":
    """A static frame shaped like Spark's Kafka source: value ``i`` goes to partition ``i % partitions``.

    Offsets count from 0 per partition; timestamps are 2026-01-01T00:00:00Z plus ``i`` seconds.
    """
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    next_offset = [0] * partitions
    rows = []
    for i, value in enumerate(values):
        part = i % partitions
        key = keys[i] if keys is not None else None
        raw = value.encode() if isinstance(value, str) else value
        rows.append((None if key is None else bytearray(key.encode()), None if raw is None else bytearray(raw),
                     topic, part, next_offset[part], base + dt.timedelta(seconds=i), 0))
        next_offset[part] += 1
    return spark.createDataFrame(rows, KAFKA_SOURCE_DDL)


@dataclass
class ParseResult:
    """Rows (dicts) that would be written and quarantine rows (dicts, with ``reason``).

    For a routing consumer, ``tables`` holds the rows of each table and ``rows``
    all of them in input order (each with its own table's columns).
    """

    rows: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [q["reason"] for q in self.quarantine]


def parse_values(schema: "SchemaLike | type[ConsumerSparkABC]", values: Sequence[str | bytes | None],
                 spark: "SparkSession | None" = None, topic: str | None = None, rules: Any = None) -> ParseResult:
    """Parse raw values like a consumer does; ``schema`` may be a consumer class (then ``topic`` picks its schema).

    ``rules``: a :class:`~framework.consumer.values.ValueRules` (a consumer class brings its own).

    Rows come back in input order, with the ``kafka_*`` metadata columns.
    """
    spark = spark or local_spark()
    if isinstance(schema, type) and getattr(schema, "routes", None):
        return _parse_routed_values(schema, values, spark, topic)
    if isinstance(schema, type):
        consumer_cls = schema
        topic = topic or consumer_cls.topics[0]
        declared = consumer_cls.schema
        schema = declared[topic] if isinstance(declared, Mapping) else declared
        rules = rules or consumer_cls.value_rules()
    struct = resolve_schema(schema, spark)
    frame = kafka_frame(kafka_like_frame(spark, values, topic=topic or "test"))
    valid, bad = split_valid_invalid(frame, struct, rules)
    order = "kafka_offset"
    return ParseResult(rows=[r.asDict(recursive=True) for r in valid.orderBy(order).collect()],
                       quarantine=[r.asDict(recursive=True) for r in bad.orderBy(order).collect()])


def _parse_routed_values(consumer_cls: "type[ConsumerSparkABC]", values: Sequence[str | bytes | None],
                         spark: "SparkSession", topic: str | None) -> ParseResult:
    owner = f"{consumer_cls.__qualname__}.schema"
    routes = dict(consumer_cls.routes or {})
    per_table = cast(Mapping[str, SchemaLike], consumer_cls.schema)  # a routing consumer has one per table
    schemas = {t: resolve_schema(per_table[t], spark, f"{owner}[{t!r}]") for t in route_tables(routes)}
    routing = Routing(str(consumer_cls.route_field), routes, schemas)
    frame = kafka_frame(kafka_like_frame(spark, values, topic=topic or consumer_cls.topics[0]))
    tables, bad = split_routed(parse_routed(frame, routing, consumer_cls.value_rules()), routing)
    rows = {t: [r.asDict(recursive=True) for r in df.orderBy("kafka_offset").collect()] for t, df in tables.items()}
    return ParseResult(rows=sorted((r for t in rows.values() for r in t), key=lambda r: r["kafka_offset"]),
                       quarantine=[r.asDict(recursive=True) for r in bad.orderBy("kafka_offset").collect()],
                       tables=rows)


class RecordingWriter(ForeachBatchWriter):
    """Keeps every batch in memory: ``batches[(topic, batch_id)]`` and ``quarantined[(topic, batch_id)]``.

    The lists are shared by the bound copies a consumer makes, so the instance
    declared on the class sees what every consumer instance wrote.
    """

    def __init__(self) -> None:
        self.batches: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.quarantined: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def quarantine_path(self, topic: str) -> None:
        return None

    def write_batch(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        rows = [r.asDict(recursive=True) for r in df.collect()]
        with self._lock:
            self.batches[(topic, batch_id)] = rows  # a replay replaces: exactly once

    def write_quarantine(self, df: "DataFrame", batch_id: int, topic: str) -> None:
        rows = [r.asDict(recursive=True) for r in df.collect()]
        with self._lock:
            self.quarantined[(topic, batch_id)] = rows

    def rows(self, topic: str) -> list[dict[str, Any]]:
        """Every row written for ``topic``, in batch order."""
        with self._lock:
            return [r for (t, _), rows in sorted(self.batches.items()) if t == topic for r in rows]


def run_batch(consumer: "ConsumerSparkABC", values: Sequence[str | bytes | None], batch_id: int = 0,
              topic: str | None = None, partitions: int = 1) -> tuple[int, int]:
    """Run the consumer's batch body (parse, split, write) on a static frame of ``values``.

    Returns (rows written, rows quarantined), as one micro-batch of :meth:`ConsumerSparkABC.run` would.
    """
    topic = topic or consumer.topics[0]
    frame = kafka_like_frame(consumer.spark, values, topic=topic, partitions=partitions)
    return consumer._process_batch(frame, batch_id, topic)
