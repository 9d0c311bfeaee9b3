"""The pipeline's producers: the two streams of the bundled API, each into its own topic.

Run them with ``python cmd/produce_cmd.py metrics workorder`` (or ``--all``).
"""
from __future__ import annotations

from framework.producer.base import ProducerABC


class MetricsProducer(ProducerABC):
    """Machine metrics ``{"id": int, "time": iso-string, "val": float}``, keyed by machine id."""

    name = "metrics"
    endpoint = "/stream_data_metrics"
    topic = "metrics"
    key_field = "id"


class WorkorderProducer(ProducerABC):
    """Work orders ``{"time": ..., "product": int, "production": number}``, keyed by product."""

    name = "workorder"
    endpoint = "/stream_data_workorder"
    topic = "workorder"
    key_field = "product"
