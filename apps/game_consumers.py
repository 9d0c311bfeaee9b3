"""The game's consumer: the ``events`` topic routed by ``event_type`` into one Parquet table per kind of event.

    python cmd/consume_cmd.py events --module apps.game_consumers --bounded
    python cmd/consume_cmd.py game --bounded      # the same consumer, by its entry-point name (setup.py)
    python cmd/consume_cmd.py events-iceberg --bounded      # the same tables as Iceberg tables

writes, under ``PIPELINE_OUTPUT_DIR``:

- ``purchases/``: purchase_sword, purchase_shield, purchase_axe, purchase_potion, purchase_spear;
  columns event_type, timestamp, host, user_agent, item, strength DECIMAL(4,2), description
- ``joins/``: join_guild; event_type, timestamp, host, user_agent, guild
- ``declarations/``: declare_war, declare_peace; event_type, timestamp, host, user_agent
- ``visits/``: visit (``GET /``); event_type, timestamp, host, user_agent
- ``events_quarantine/``: every other record, with its reason (``unknown event_type 'x'``,
  ``not valid JSON``, ``missing required field 'item'``, ``field 'strength' expected decimal(4,2) (...), got "x"``,
  ...)

Each table also has the ``kafka_*`` metadata columns (topic, partition, offset,
timestamp, key). Each table is a view of ``python cmd/query_cmd.py``, e.g.
``SELECT item, round(avg(strength), 2) FROM purchases GROUP BY item``.
Everything here is a declaration: the routing, the parsing, the quarantine and
the exactly-once files come from :class:`~framework.consumer.base.ConsumerSparkABC`.
"""
from __future__ import annotations

from pyspark.sql.types import DecimalType, StringType, StructField, StructType, TimestampType

from framework.consumer.base import CONSUMERS, ConsumerSparkABC
from framework.sinks import ParquetWriter
from framework.sinks.iceberg import IcebergWriter

#: the fields every game event carries (see apps.game_api)
COMMON_FIELDS = [
    StructField("event_type", StringType(), nullable=False),
    StructField("timestamp", TimestampType(), nullable=False),
    StructField("host", StringType()),
    StructField("user_agent", StringType()),
]

#: the exact type of a strength: the game API draws 0.00..10.00 in steps of 0.01 (apps.game_api.draw_strength).
#: Exact, so every engine casts the same number: ``cast(strength as integer)`` of a DECIMAL rounds half away
#: from zero in Trino (as in the seeds' Presto) and in DuckDB alike, where a DOUBLE 2.5 gives 3 in Trino and 2
#: in DuckDB (docs/trino.md, "Where the engines differ"). A strength with a third decimal or 100 and more is
#: quarantined, never rounded (docs/parse-contract.md).
STRENGTH_TYPE = DecimalType(4, 2)
#: {"event_type": "purchase_sword", ..., "item": "sword", "strength": 7.31, "description": "a fine steel sword"}
PURCHASE_SCHEMA = StructType([*COMMON_FIELDS,
                              StructField("item", StringType(), nullable=False),
                              StructField("strength", STRENGTH_TYPE, nullable=False),
                              StructField("description", StringType())])
#: {"event_type": "join_guild", ..., "guild": "the-knights"}
JOIN_SCHEMA = StructType([*COMMON_FIELDS, StructField("guild", StringType(), nullable=False)])
#: {"event_type": "declare_war" | "declare_peace", ...}
DECLARATION_SCHEMA = StructType(list(COMMON_FIELDS))
#: {"event_type": "visit", ...}
VISIT_SCHEMA = StructType(list(COMMON_FIELDS))


class GameEventsConsumer(ConsumerSparkABC):
    """The ``events`` topic into the ``purchases``, ``joins``, ``declarations`` and ``visits`` tables."""

    name = "events"
    topics = ["events"]
    route_field = "event_type"
    routes = {
        "purchase_sword": "purchases",
        "purchase_shield": "purchases",
        "purchase_axe": "purchases",
        "purchase_potion": "purchases",
        "purchase_spear": "purchases",
        "join_guild": "joins",
        "declare_war": "declarations",
        "declare_peace": "declarations",
        "visit": "visits",
    }
    schema = {"purchases": PURCHASE_SCHEMA, "joins": JOIN_SCHEMA, "declarations": DECLARATION_SCHEMA,
              "visits": VISIT_SCHEMA}
    writer = ParquetWriter()


#: the name the package's entry point (setup.py, ``pipeline.consumers``) gives this module
CONSUMERS.alias("game", GameEventsConsumer.name)


class GameEventsIcebergConsumer(GameEventsConsumer):
    """The same routing into Iceberg tables ``iceberg.<namespace>.purchases``, ``joins``, ``declarations``,
    ``visits`` (and ``events_quarantine``): one commit per batch and table, exactly once, any warehouse URL.

        python cmd/consume_cmd.py events-iceberg --bounded
        python cmd/query_cmd.py "select avg(cast(strength as integer)) from purchases"
    """

    name = "events-iceberg"
    writer = IcebergWriter()
