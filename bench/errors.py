"""The errors the benchmark raises on purpose (each message one sentence that says what to do)."""
from __future__ import annotations

from framework.errors import FrameworkError


class BenchError(FrameworkError):
    """A benchmark option is invalid, or a measurement could not be taken."""


class ReferenceToolError(BenchError):
    """Kafka's own ``ProducerPerformance`` tool failed or printed no summary line."""
