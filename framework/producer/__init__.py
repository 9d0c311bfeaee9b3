"""Producers: an HTTP JSON stream (or another source) into a Kafka topic, exactly once across restarts.

- :class:`ProducerABC` (:mod:`framework.producer.base`): the base a producer subclasses.
- :mod:`framework.producer.clients`: the Kafka clients behind it (kafka-python, or librdkafka in
  :mod:`framework.producer.confluent`), checked before any connection.
- :mod:`framework.producer.resume`, :mod:`framework.producer.partitioning`: where a restart resumes.
- :class:`SimulationProducerABC` (:mod:`framework.producer.simulation`): a cadCAD model instead of an
  HTTP stream, same guarantees; :mod:`framework.producer.distributed` publishes its runs from Spark tasks.
- :mod:`framework.producer.summary`: what a run did; :mod:`framework.producer.event_log`: Kafka as an
  event log for request handlers (acknowledge before answering).
"""
from __future__ import annotations

from framework.producer.base import PRODUCERS, ProducerABC
from framework.producer.simulation import SimulationProducerABC
from framework.producer.summary import ProduceSummary

__all__ = ["PRODUCERS", "ProduceSummary", "ProducerABC", "SimulationProducerABC"]
