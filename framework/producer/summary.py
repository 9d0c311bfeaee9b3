"""What one producer run did: counts, positions, speed (returned by ``ProducerABC.run``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProduceSummary:
    """Totals of one :meth:`~framework.producer.base.ProducerABC.run`.

    ``sent`` records reached the topic (acknowledged), ``skipped_existing`` were
    already in Kafka from an earlier run, ``dead_lettered`` went to ``<topic>.dlq``,
    ``dropped`` were dropped by ``transform``. Positions are source positions.
    """

    name: str
    topic: str
    sent: int
    skipped_existing: int
    dead_lettered: int
    dropped: int
    first_position: int | None
    last_position: int | None
    elapsed: float
    reconnects: int = 0
    retries: int = 0
    stopped: bool = False

    @property
    def records_per_second(self) -> float:
        """Records sent per second of the whole run."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def positions(self) -> str:
        if self.first_position is None:
            return "no new positions"
        return f"positions {self.first_position}..{self.last_position}"

    def line(self) -> str:
        """One human line, the command's output."""
        return (f"{self.name}: {self.sent} sent to {self.topic}, {self.skipped_existing} already there, "
                f"{self.dead_lettered} dead-lettered, {self.dropped} dropped; {self.positions}; "
                f"{self.elapsed:.1f}s, {self.records_per_second:.0f} records/s"
                + (f"; {self.reconnects} reconnects" if self.reconnects else "")
                + (f"; {self.retries} Kafka retries" if self.retries else "")
                + (" (stopped)" if self.stopped else ""))
