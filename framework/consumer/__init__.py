"""Consumers: Kafka topics through Spark Structured Streaming into a sink, exactly once.

- :class:`ConsumerSparkABC` (:mod:`framework.consumer.base`): the base a consumer subclasses.
- :mod:`framework.consumer.declaration`: the checks of a subclass's class attributes.
- :mod:`framework.consumer.parsing`: JSON values into typed rows, or quarantine with a reason.
- :mod:`framework.consumer.routing`: one topic into several tables by a field.
- :mod:`framework.consumer.progress`, :mod:`framework.consumer.queries`: lag, summaries, query lifecycle.
"""
from __future__ import annotations

from framework.consumer.base import CONSUMERS, ConsumerSparkABC

__all__ = ["CONSUMERS", "ConsumerSparkABC"]
