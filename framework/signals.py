"""Ctrl-C and SIGTERM while Spark runs: the command's handler stays in charge.

pyspark installs its own SIGINT handler when a SparkContext starts; that handler
calls ``cancelAllJobs`` through Py4J from inside the signal handler, which fails
with ``RuntimeError: reentrant call inside <_io.BufferedReader ...>`` when the
main thread is itself waiting on Py4J (it always is while a streaming query
runs), and the command then carries on to the end. Two pieces fix that:

- :func:`framework.spark.build_spark_session` starts the SparkContext from a
  helper thread while the main thread waits (pyspark installs its handler only
  when started in the main thread), so a signal during the start reaches the
  command's handler and is honoured once the start returns; it also wraps the
  start in :func:`preserved_handlers`, which puts back whatever SIGINT/SIGTERM
  handlers were installed before, should anything replace them;
- :class:`StopSignals` is the handler the long-running commands install: the
  first SIGINT/SIGTERM calls ``on_stop`` (which only sets flags: no Py4J call
  happens inside the handler), a second one raises :class:`KeyboardInterrupt`
  to cut the wait short. :attr:`StopSignals.received` tells the command to exit
  with :data:`EXIT_INTERRUPTED` (130, as :mod:`framework.cli` documents).

Minimal use::

    with StopSignals(consumer.stop, "the streaming queries") as signals:
        summary = consumer.run(mode="bounded")     # Spark starts inside: the handler stays ours
    return EXIT_INTERRUPTED if signals.received else 0

Only the main thread may install handlers; elsewhere both helpers do nothing.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from framework.log import get_logger

log = get_logger("signals")

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def preserved_handlers() -> Iterator[None]:
    """Run the body (e.g. a SparkContext start), then restore the SIGINT/SIGTERM handlers it replaced."""
    if not _main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            if signal.getsignal(sig) is not handler and handler is not None:
                signal.signal(sig, handler)
                log.debug("Restored the {} handler replaced while Spark started", signal.Signals(sig).name)


class StopSignals:
    """SIGINT/SIGTERM -> ``on_stop()`` once; a second signal raises :class:`KeyboardInterrupt`.

    ``what`` names what is being stopped and ``when`` how soon, for the log line. The handler only
    calls ``on_stop`` (which must be signal-safe: set an event, no I/O, no
    Py4J) and logs. Used as a context manager it installs itself on entry and
    restores the previous handlers on exit.
    """

    def __init__(self, on_stop: Callable[[], None], what: str = "the command",
                 when: str = "after the current batch") -> None:
        self.on_stop = on_stop
        self.what = what
        self.when = when
        self.received: str | None = None  # name of the first signal received
        self._previous: dict[int, Any] = {}

    def handle(self, signum: int, _frame: Any = None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            log.warning("{} received again: stopping now", name)
            raise KeyboardInterrupt
        self.received = name
        log.warning("{} received: stopping {} {} (send it again to stop at once)", name, self.what, self.when)
        self.on_stop()

    @property
    def exit_code(self) -> int:
        """What the command exits with after a stop: 130 after Ctrl-C (SIGINT), 0 after SIGTERM.

        SIGTERM is how a service manager (systemd, ``docker stop``) asks for a graceful stop,
        which the command honours completely, so it is a success; 0 without a signal.
        """
        return EXIT_INTERRUPTED if self.received == "SIGINT" else 0

    def install(self) -> "StopSignals":
        if _main_thread() and not self._previous:
            self._previous = {sig: signal.signal(sig, self.handle) for sig in SIGNALS}
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.restore()
