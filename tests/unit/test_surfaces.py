"""The public surfaces a user subclasses: small, typed, and the lifecycle owned by the base classes."""
from __future__ import annotations

import inspect
import typing

import pytest

from framework.consumer import ConsumerSparkABC
from framework.errors import DeclarationError
from framework.producer import ProducerABC
from framework.producer import protocols
from framework.sinks import ForeachBatchWriter
from tests.unit.test_consumer import declare


def public(cls: type) -> set[str]:
    names = set(dir(cls)) | set(cls.__annotations__)  # declared, without a default
    return {name for name in names if not name.startswith("_")}


def test_consumer_public_surface():
    assert public(ConsumerSparkABC) == {
        # the declaration and the one override point
        "abstract", "name", "topics", "schema", "writer", "fail_on_data_loss", "route_field", "routes", "transform",
        # what the parse contract lets a consumer declare about its values (docs/parse-contract.md)
        "timestamp_units", "timestamp_years", "value_rules",
        # lifecycle and resources
        "run", "stop", "stopping", "close", "spark", "admin",
        # facts
        "describe", "checkpoint_path"}


def test_writer_public_surface():
    assert public(ForeachBatchWriter) == {
        "write_batch", "write_quarantine", "prepare", "prepare_routes", "describe", "table_name", "output_path",
        "quarantine_path", "settings", "consumer_name", "spark_conf", "writes_every_row",
        # what a table sink (JDBC, Iceberg) needs before the query starts: the declared and the written schemas
        "declare_schema", "declared_schema", "prepare_tables"}


@pytest.mark.parametrize("attr", ["run", "stop", "stopping", "close", "spark", "admin"])
def test_consumer_lifecycle_is_final(attr):
    with pytest.raises(DeclarationError, match=rf"^UnitConsumer overrides {attr}; a consumer may override "
                                               r"transform\(\) only, the base class owns the lifecycle\.$"):
        declare(**{attr: lambda self: None})


def test_producer_injection_points_are_protocols_not_any():
    import framework.producer.base as base

    hints = typing.get_type_hints(ProducerABC.__init__, vars(base))
    for name in ("producer", "producer_factory", "session", "admin", "consumer_factory"):
        assert hints[name] is not typing.Any and "Any" != str(hints[name]), name
    assert hints["producer"] == protocols.KafkaProducerLike | None
    assert hints["session"] == protocols.HttpSessionLike | None


def test_producer_init_states_units():
    doc = inspect.getdoc(ProducerABC.__init__) or ""
    for param in ("progress_interval", "poll_interval", "flush_timeout", "delay"):
        line = next(line for line in doc.splitlines() if f":param {param}:" in line)
        assert "seconds" in line, line
