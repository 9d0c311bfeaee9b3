"""The checks ``ConsumerSparkABC.__init_subclass__`` runs on a consumer's class attributes.

Everything that can be checked without Spark or Kafka (routes included, see
:mod:`framework.consumer.routing`) is checked when the class body runs, so a wrong
declaration fails at import with one sentence naming the class and the attribute
(a DDL string schema is parsed later, with Spark).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from framework.errors import DeclarationError
from framework.consumer.parsing import check_schema, check_schema_per_name
from framework.consumer.routing import check_routes
from framework.sinks import QUARANTINE_SUFFIX, ForeachBatchWriter
from framework.topics import topic_name_problem

_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: what a subclass may not override: the lifecycle the base class owns (as ProducerABC's)
FINAL = ("run", "stop", "stopping", "close", "spark", "admin")


def validate_declaration(cls: type[Any]) -> None:
    """Check the class attributes of a concrete consumer; :class:`DeclarationError` names class and attribute."""
    where = cls.__qualname__
    for attr in ("name", "topics", "schema", "writer"):
        if not hasattr(cls, attr):
            raise DeclarationError(f"{where} must declare the class attribute `{attr}` "
                                   f"(see the ConsumerSparkABC docstring for an example).")
    name = cls.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DeclarationError(f"{where}.name must be a non-empty string of letters, digits, '.', '_' or '-', "
                               f"not {name!r}.")
    topics = cls.topics
    if isinstance(topics, str) or not isinstance(topics, (list, tuple)):
        raise DeclarationError(f"{where}.topics must be a list of topic names like ['metrics'], not {topics!r}.")
    if not topics:
        raise DeclarationError(f"{where}.topics is empty; name at least one Kafka topic.")
    for topic in topics:
        problem = topic_name_problem(topic)
        if problem is not None:
            raise DeclarationError(f"{where}.topics contains {topic!r}, which is not a valid Kafka topic name: "
                                   f"it {problem}.")
    if len(set(topics)) != len(topics):
        raise DeclarationError(f"{where}.topics lists a topic twice: {list(topics)!r}.")
    writer = cls.writer
    schema = cls.schema
    quarantine = f"{writer.table_name(topics[0])}{QUARANTINE_SUFFIX}" if isinstance(writer, ForeachBatchWriter) else ""
    routed = check_routes(where, getattr(cls, "route_field", None), getattr(cls, "routes", None), topics, schema,
                          quarantine)  # a routing consumer has one schema per table, checked there
    if not routed:
        _check_topic_schemas(where, schema, list(topics))
    if isinstance(writer, type) and issubclass(writer, ForeachBatchWriter):
        raise DeclarationError(f"{where}.writer must be a writer instance like {writer.__name__}(), not the class.")
    if not isinstance(writer, ForeachBatchWriter):
        raise DeclarationError(f"{where}.writer must be an instance of a ForeachBatchWriter "
                               f"(ParquetWriter(), ConsoleWriter(), or your own), not {writer!r}.")
    for attr in FINAL:
        if attr in cls.__dict__:
            raise DeclarationError(f"{where} overrides {attr}; a consumer may override transform() only, the "
                                   "base class owns the lifecycle.")
    if not isinstance(cls.fail_on_data_loss, bool):
        raise DeclarationError(f"{where}.fail_on_data_loss must be True or False, not {cls.fail_on_data_loss!r}.")


def _check_topic_schemas(where: str, schema: object, topics: list[str]) -> None:
    """One schema for every topic, or a dict with exactly one schema per topic."""
    if isinstance(schema, Mapping):
        check_schema_per_name(f"{where}.schema", f"{where}.schema is a dict, so it needs exactly one schema per topic",
                              schema, topics, "not in topics")
    else:
        check_schema(schema, f"{where}.schema")
