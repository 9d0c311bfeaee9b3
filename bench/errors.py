"""The errors the benchmark raises on purpose (each message one sentence that says what to do)."""
from __future__ import annotations

from framework.errors import FrameworkError


class BenchError(FrameworkError):
    """A benchmark option is invalid, or a measurement could not be taken."""


class ReferenceToolError(BenchError):
    """Kafka's own ``ProducerPerformance`` tool failed or printed no summary line."""


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the benchmark; everything it had started was stopped first.

    A :class:`KeyboardInterrupt`, so that no ``except Exception`` of a section swallows it.
    ``section`` is the one that was running, ``stopped`` names what was stopped (the broker,
    the Spark session, API processes), ``saved`` the results file of the finished sections (or None).
    """

    def __init__(self, section: str, stopped: list[str], saved: object = None) -> None:
        super().__init__(section)
        self.section = section
        self.stopped = stopped
        self.saved = saved

    def sentence(self) -> str:
        what = ", ".join(self.stopped) if self.stopped else "nothing was running yet"
        saved = (f"the finished sections' results are in {self.saved}" if self.saved
                 else "no section had finished, nothing saved")
        return f"the benchmark was interrupted during {self.section}; stopped what it had started ({what}); {saved}."
