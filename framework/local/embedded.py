"""The embedded default: start what a job needs on one machine, and stop it afterwards.

:class:`EmbeddedServices` is a context manager for a job's infrastructure:

- Kafka: with no ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` it starts the local Apache
  Kafka broker (or reuses one already running, which it then leaves running);
  with bootstrap servers set it only checks they answer.
- PostgreSQL, when a job asks for it (:meth:`EmbeddedServices.ensure_postgres`):
  with no ``PIPELINE_POSTGRES_URL`` it starts the local server (or reuses a
  running one, which it then leaves running); with a URL set it only checks
  that the server answers.
- Any other background service the job hands it (``start_service``), for
  example the streaming API; each is stopped in reverse order on exit.

Contract: on exit (normal, exception or Ctrl-C) everything this object started
is stopped, by its own handle or PID, and nothing it did not start is touched.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from framework.admin import KafkaAdmin
from framework.local.kafka_broker import LocalKafkaBroker
from framework.local.kafka_cluster import LocalKafkaCluster, local_kafka
from framework.local.postgres import LocalPostgres, PostgresTarget, postgres_target
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("embedded")


class Stoppable(Protocol):
    def stop(self) -> Any: ...


class EmbeddedServices:
    """Start the local broker (if needed) and registered services; stop them on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: LocalKafkaBroker | LocalKafkaCluster | None = None
        self.started: list[tuple[str, Stoppable]] = []

    def __enter__(self) -> "EmbeddedServices":
        try:
            self._start_kafka()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start_service(self, name: str, start: Callable[[], Stoppable]) -> Stoppable:
        """Run ``start()`` and remember its handle, to be stopped on exit."""
        handle = start()
        self.started.append((name, handle))
        return handle

    def ensure_postgres(self) -> PostgresTarget:
        """The database of the settings, answering: the local server is started when no URL is set.

        Raises :class:`~framework.errors.PostgresError` (one sentence) when it
        cannot be started or reached.
        """
        if not self.settings.uses_local_postgres:
            target = postgres_target(self.settings)
            with target.connect(timeout=10):
                log.info("Using the PostgreSQL server at {}", target.safe_url)
            return target
        pg = LocalPostgres.from_settings(self.settings)
        if pg.running_pid():
            log.info("Using the local PostgreSQL already running at {}", pg.target.safe_url)
        else:
            self.start_service("local PostgreSQL", pg.start)
        return pg.target

    def stop(self) -> None:
        """Stop everything this object started, newest first."""
        while self.started:
            name, handle = self.started.pop()
            t0 = time.monotonic()
            try:
                handle.stop()
                log.info("Stopped {} ({:.1f}s)", name, time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                log.error("Stopping {} failed: {}", name, exc)

    def _start_kafka(self) -> None:
        if not self.settings.uses_local_broker:
            with KafkaAdmin(self.settings) as admin:  # fails fast with one sentence when unreachable
                log.info("Using the Kafka cluster at {} ({} broker(s))",
                         self.settings.bootstrap_servers, admin.broker_count())
            return
        self.broker = local_kafka(self.settings)
        if self.broker.running_pid():
            log.info("Using the local Kafka broker already running at {}", self.broker.bootstrap_servers)
            return
        self.broker.start()
        self.started.append(("local Kafka broker", self.broker))
