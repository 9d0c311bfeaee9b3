"""Test harness shipped with the library, for the framework's tests and for users' own.

- :func:`running_local_broker`: a real Apache Kafka broker on free ports in a
  temporary state directory, stopped afterwards (integration tests).
- :func:`running_local_postgres`: a real PostgreSQL server on a free port in a
  temporary state directory, stopped afterwards (integration tests).
- :func:`local_test_settings`: settings pointing at such a broker and at
  temporary output directories.

Fakes for unit tests (a fake HTTP stream, a recording Kafka producer, ...) live
here too, so a user's subclass can be tested without a cluster.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from framework.local.kafka_broker import LocalKafkaBroker, free_port
from framework.local.postgres import LocalPostgres
from framework.settings import Settings


@contextlib.contextmanager
def running_local_broker(state_dir: Path, settings: Settings | None = None) -> Iterator[LocalKafkaBroker]:
    """A real local Kafka broker on free ports with its state in ``state_dir``; stopped on exit."""
    settings = settings or Settings.from_env()
    broker = LocalKafkaBroker.from_settings(
        settings, state_dir=Path(state_dir), port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def running_local_postgres(state_dir: Path | None = None) -> Iterator[LocalPostgres]:
    """A real local PostgreSQL on a free port, state in ``state_dir`` (default: a new temporary directory).

    As root the server runs as the ``postgres`` user, which must be able to
    traverse ``state_dir``; the default directory is made so (mode 0711).
    The server is stopped, and a default directory removed, on exit.
    """
    import shutil
    import tempfile

    own = state_dir is None
    root = Path(tempfile.mkdtemp(prefix="pipeline-pg-")) if own else Path(state_dir)
    root.chmod(0o711)
    server = LocalPostgres(state_dir=root / "postgres", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(root, ignore_errors=True)


def local_test_settings(broker: LocalKafkaBroker, workdir: Path, **overrides) -> Settings:
    """Settings that use ``broker`` and keep all output under ``workdir``."""
    base = Settings.from_env()
    values = dict(kafka_bootstrap_servers=broker.bootstrap_servers, output_dir=Path(workdir) / "output",
                  checkpoint_dir=Path(workdir) / "checkpoints", state_dir=Path(workdir) / "state",
                  spark_master="local[2]", spark_ui=False, log_level="DEBUG")
    values.update(overrides)
    return base.replace(**values)
