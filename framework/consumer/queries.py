"""The streaming queries of one consumer run, one per topic: wait for them, stop them cleanly.

Stopping a Structured Streaming query interrupts the micro-batch it is running.
That is safe for the data (an interrupted batch is not committed and is replayed
on the next run, see :mod:`framework.sinks`) but wasteful, and with a Python
``foreachBatch`` Spark may not recognise the interruption: it looks for it in
the Python traceback with a regular expression that overflows the JVM stack on a
long Java stack trace, then reports a failed query. :class:`QueryGroup`
therefore

- lets the running batch of each topic finish first (up to ``grace`` seconds),
  then stops the query before its next batch;
- in the ``foreachBatch`` wrapper (:meth:`QueryGroup.guard`), turns an error
  caused by ``stop()`` into one short exception in the form Spark recognises as
  "stopped", and makes a batch that begins while the group stops wait for the
  stop instead of starting work.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from framework.consumer.failures import explain, root_cause, write_trace
from framework.errors import ConsumerError
from framework.log import get_logger

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.streaming.query import StreamingQuery

log = get_logger("consumer")

POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 30.0


class BatchInterrupted(RuntimeError):
    """A micro-batch was cut short by ``stop()``; it was not committed and will be replayed.

    The message has the form Spark's ``StreamExecution.PROXY_ERROR`` matches, so
    Spark ends the query as stopped rather than failed.
    """

    def __init__(self, topic: str, batch_id: int) -> None:
        super().__init__("py4j.protocol.Py4JJavaError: An error occurred while calling foreachBatch"
                         f"(topic {topic}, batch {batch_id}).\n: java.lang.InterruptedException")


class QueryGroup:
    """Running queries by topic, sharing one stop flag (``threading.Event``)."""

    def __init__(self, owner: str, stop_event: threading.Event, grace: float = STOP_GRACE_SECONDS, *,
                 checkpoint: Callable[[str], Path] | None = None, trace_dir: Path | None = None,
                 settings: Any = None) -> None:
        """``checkpoint(topic)``, ``trace_dir`` and ``settings`` only serve the failure sentence (see :meth:`wait`)."""
        self.owner = owner
        self.settings = settings
        self.checkpoint = checkpoint
        self.trace_dir = trace_dir
        self.stop_event = stop_event
        self.grace = grace
        self.queries: dict[str, "StreamingQuery"] = {}
        self._running: dict[str, int] = {}  # topic -> batch id inside foreachBatch
        self._changed = threading.Condition()

    def add(self, topic: str, query: "StreamingQuery") -> None:
        self.queries[topic] = query

    def guard(self, topic: str, body: Callable[["DataFrame", int], None]) -> Callable[["DataFrame", int], None]:
        """``body`` as a ``foreachBatch`` function that cooperates with :meth:`stop`."""
        def process(df: "DataFrame", batch_id: int) -> None:
            if self.stop_event.is_set():
                self._await_stopped(topic)
                raise BatchInterrupted(topic, batch_id)
            with self._changed:
                self._running[topic] = batch_id
            try:
                body(df, batch_id)
            except Exception:
                if self.stop_event.is_set() and not self._active(topic):
                    raise BatchInterrupted(topic, batch_id) from None
                raise
            finally:
                with self._changed:
                    self._running.pop(topic, None)
                    self._changed.notify_all()
        return process

    def wait(self, timeout: float | None, started: float) -> bool:
        """Block until every query ended (False), or the stop flag / ``timeout`` (True).

        Raises :class:`ConsumerError` as soon as one query failed.
        """
        while True:
            active = False
            for topic, query in self.queries.items():
                if query.isActive:
                    active = True
                    continue
                failure = query.exception()
                if failure is not None:
                    raise self._failure(topic, failure)
            if not active:
                return False
            if self.stop_event.is_set():
                log.info("Stopping consumer {}", self.owner)
                return True
            if timeout is not None and time.monotonic() - started >= timeout:
                log.info("Consumer {} reached its timeout of {} s", self.owner, timeout)
                self.stop_event.set()
                return True
            self._await_any(POLL_SECONDS)

    def _failure(self, topic: str, failure: Any) -> ConsumerError:
        """One sentence with the innermost cause; the full text to the DEBUG log and a trace file."""
        cause = root_cause(failure)
        log.debug("The query of consumer {} for topic {} failed; full trace:\n{}", self.owner, topic, cause.text)
        trace = write_trace(cause.text, self.trace_dir, f"{self.owner}-{topic}")
        checkpoint = self.checkpoint(topic) if self.checkpoint else None
        sentence = explain(failure, consumer=self.owner, topic=topic, checkpoint=checkpoint, settings=self.settings)
        if cause.kind == "other":
            sentence = f"The query of consumer {self.owner!r} for topic {topic!r} failed: {sentence}"
        return ConsumerError(sentence + (f" (full trace: {trace})" if trace else ""))

    def _await_any(self, seconds: float) -> None:
        """Sleep ``seconds`` at most: less when a query ends or the stop flag is set (checked every 0.1 s)."""
        deadline = time.monotonic() + seconds
        while not self.stop_event.is_set() and (left := deadline - time.monotonic()) > 0:
            active = [q for q in self.queries.values() if q.isActive]
            if not active:
                return
            try:
                active[0].awaitTermination(min(left, 0.1))  # type: ignore[arg-type]  # Spark takes seconds as a float too
            except Exception:  # noqa: BLE001 - a failed query is reported by wait() via query.exception()
                self.stop_event.wait(min(left, 0.1))

    def stop(self) -> None:
        """Let each running batch finish (``grace`` seconds in all), then stop every query."""
        self.stop_event.set()
        deadline = time.monotonic() + self.grace
        try:
            for topic, query in self.queries.items():
                with self._changed:
                    if topic in self._running:
                        log.info("Letting batch {} of {} finish (interrupt again to cut it short)",
                                 self._running[topic], topic)
                    self._changed.wait_for(lambda topic=topic: topic not in self._running,  # type: ignore[misc]
                                           timeout=max(0.0, deadline - time.monotonic()))
                if query.isActive:
                    query.stop()
        finally:  # also after a second Ctrl-C during the wait: stop now
            for query in self.queries.values():
                if query.isActive:
                    query.stop()

    def _active(self, topic: str) -> bool:
        query = self.queries.get(topic)
        return bool(query is not None and query.isActive)

    def _await_stopped(self, topic: str) -> None:
        """Wait until :meth:`stop` stopped this topic's query (bounded), so Spark sees an interruption."""
        deadline = time.monotonic() + self.grace + 30
        while self._active(topic) and time.monotonic() < deadline:
            time.sleep(0.05)


def first_line(exc: BaseException | Any) -> str:
    """The first meaningful line of a (possibly Java) exception message."""
    text = exc.desc if hasattr(exc, "desc") else str(exc)
    for line in reversed(str(text).splitlines()):  # a framework error raised inside foreachBatch: its sentence
        if line.startswith("framework.errors.") and ": " in line:
            return line.split(": ", 1)[1].strip()[:500]
    for line in str(text).splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "JVM stacktrace", "===")):
            return line[:500]
    return type(exc).__name__
