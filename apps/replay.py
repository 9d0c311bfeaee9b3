"""Serve the streams of a data directory: index every dataset file once, pace the output.

:class:`Catalog` indexes every ``.json``, ``.jsonl`` and ``.ndjson`` file of a
data directory with :func:`apps.datasets.scan` (file formats, order, positions
and the wire format of a line are described in :mod:`apps.datasets`).

:func:`replay` yields the lines of positions ``[start, stop)`` as ``bytes``
chunks, either as fast as possible (many lines per chunk), one record every
``delay`` seconds, or with the real gaps between record times divided by
``speed``. It never sleeps past a set *stopping* event: it raises
:class:`StreamAborted` instead, which WSGI servers treat as a dropped
connection, so the client sees an incomplete response and not a finished
stream.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from apps.datasets import (BATCH_RECORDS, POSITION_FIELD, SUFFIXES, TIME_FIELD, Stream, parse_array, parse_time,
                           scan)
from framework.errors import DataSourceError
from framework.log import get_logger

__all__ = ["BATCH_RECORDS", "Catalog", "IGNORED_FILES", "POSITION_FIELD", "Stream", "StreamAborted", "TIME_FIELD",
           "Unavailable", "parse_array", "parse_time", "replay", "scan"]
MAX_WAIT_SLICE = 3600.0  # seconds one sleep of the pacing lasts at most

IGNORED_FILES = frozenset({"ground_truth.json"})
"""Files of a data directory that are not streams (the generator's answer key)."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_log = get_logger("api")


class StreamAborted(ConnectionAbortedError):
    """A stream ended early (server stopping, file changed): the response must not end normally."""


@dataclass(frozen=True)
class Unavailable:
    """A data file that cannot be served, and why (one sentence)."""

    name: str
    path: Path
    reason: str


@dataclass(frozen=True)
class Catalog:
    """The streams of a data directory, indexed once at start-up."""

    data_dir: Path
    streams: dict[str, Stream]
    unavailable: dict[str, Unavailable]

    @classmethod
    def load(cls, data_dir: Path, ignore: Iterable[str] = IGNORED_FILES, time_field: str = TIME_FIELD
             ) -> "Catalog":
        """Scan every ``.json``, ``.jsonl`` and ``.ndjson`` file directly in ``data_dir`` except ``ignore``.

        Hidden files are skipped. A file that fails :func:`scan` (or has a name
        unusable in a URL, or the same name as another file with another suffix,
        or is a link leading outside ``data_dir``) is logged as an error and kept
        in :attr:`unavailable` with the reason; the other files are served.
        Records that are not JSON objects are counted in a warning (they are
        served, for the producer's dead-letter topic). Raises
        :class:`DataSourceError` only if ``data_dir`` is not a directory.
        """
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataSourceError(
                f"The data directory {data_dir} does not exist; create the datasets with "
                "`python data_source/generate.py` or point --data-dir / PIPELINE_DATA_DIR at them.")
        root = data_dir.resolve()
        ignored = set(ignore)
        streams: dict[str, Stream] = {}
        unavailable: dict[str, Unavailable] = {}
        for path in sorted(p for p in data_dir.iterdir() if p.suffix in SUFFIXES):
            if path.name in ignored or path.name.startswith(".") or not path.is_file():
                continue
            name = path.stem
            started = time.perf_counter()
            try:
                if name in streams or name in unavailable:
                    other = (streams[name] if name in streams else unavailable[name]).path.name
                    raise DataSourceError(f"{path} has the same stream name as {other}; rename one of them.")
                if not NAME.match(name):
                    raise DataSourceError(f"{path} has a name that cannot be part of a URL; use letters, "
                                          "digits, '_' and '-' only.")
                if not path.resolve().is_relative_to(root):
                    raise DataSourceError(f"{path} leads outside the data directory {data_dir}; copy the file in.")
                stream = scan(path, name, time_field)
            except DataSourceError as exc:
                _log.error("stream {!r} is not served: {}", name, exc)
                unavailable.setdefault(name, Unavailable(name, path, str(exc)))
                continue
            streams[name] = stream
            order = f"by {time_field!r}, {stream.first_time} .. {stream.last_time}" if stream.timed else "file order"
            _log.info("stream {!r}: {} records from {} ({}) indexed in {:.2f} s", name, stream.records, path,
                      order, time.perf_counter() - started)
            if stream.not_objects:
                _log.warning("stream {!r}: {} records are not JSON objects; they are served as they are, for the "
                             "producer's dead-letter topic", name, stream.not_objects)
            if stream.untimed:
                _log.warning("stream {!r}: {} records have no usable {!r}; each follows the record before it in "
                             "the file", name, stream.untimed, time_field)
        if not streams:
            _log.warning("no stream is served: {} has no valid .json, .jsonl or .ndjson file", data_dir)
        return cls(data_dir=data_dir, streams=streams, unavailable=unavailable)


def replay(stream: Stream, file: BinaryIO, start: int, stop: int, *, delay: float = 0.0,
           speed: float | None = None, stopping: threading.Event | None = None) -> Iterator[bytes]:
    """Yield the wire lines of positions ``[start, stop)`` of ``stream`` read from ``file``.

    Pacing: with ``speed`` the record at position ``p`` is due
    ``(time[p] - time[start]) / speed`` seconds after the first; otherwise
    ``(p - start) * delay`` seconds after it (``delay=0``: no waiting, chunks
    of :data:`BATCH_RECORDS` lines). The first record is sent at once; records
    already due are sent together in one chunk, so a slow client or a short
    delay makes chunks larger, never the replay slower than requested.

    Raises :class:`StreamAborted` when ``stopping`` is set or the file changed
    while being read. Closes ``file`` when done, aborted or closed early.
    """
    stopping = stopping or threading.Event()
    sent = start
    started = time.monotonic()
    outcome = "client left"
    try:
        if speed is None and delay <= 0:
            for chunk in stream.batches(file, start, stop):
                if stopping.is_set():
                    raise StreamAborted("the API is stopping")
                yield chunk
                sent = min(stop, sent + BATCH_RECORDS)
        else:
            times = stream.times
            base = times[start] if start < stop else 0
            pending: list[bytes] = []
            for position in range(start, stop):
                if speed:
                    due = started + (times[position] - base) / 1e6 / speed
                else:
                    due = started + (position - start) * delay
                wait = due - time.monotonic()
                if wait > 0:
                    if pending:
                        yield b"".join(pending)
                        sent, pending = position, []
                    # wait in slices: Event.wait overflows past threading.TIMEOUT_MAX (~292 years)
                    while wait > 0:
                        if stopping.wait(min(wait, MAX_WAIT_SLICE)):
                            raise StreamAborted("the API is stopping")
                        wait = due - time.monotonic()
                pending.append(stream.line(file, position))
                if len(pending) >= BATCH_RECORDS:
                    yield b"".join(pending)
                    sent, pending = position + 1, []
            if pending:
                yield b"".join(pending)
        sent = stop
        outcome = "finished"
    except DataSourceError as exc:
        outcome = "aborted"
        _log.error("stream {!r} aborted at position {}: {}", stream.name, sent, exc)
        raise StreamAborted(str(exc)) from None
    except StreamAborted:
        outcome = "aborted (API stopping)"
        raise
    finally:
        file.close()
        elapsed = time.monotonic() - started
        _log.info("stream {!r} {}: positions {}..{} ({} records) in {:.2f} s", stream.name, outcome, start,
                  sent, sent - start, elapsed)
