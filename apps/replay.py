"""Replay JSON Lines files in time order: index once, read lazily, pace the output.

A *stream* is a JSON Lines file (UTF-8, one JSON object per line, blank lines
ignored; the ``.json`` name is kept for history) in which every object has a
``time`` member: an ISO-8601 date-time (``2026-01-05T08:00:00.000Z``; no offset
means UTC) or a number of seconds since 1970-01-01 UTC.

:func:`scan` reads a file once and keeps, per record, its time (microseconds),
byte offset and length in three ``array`` columns sorted by time (stable: equal
times keep file order). Memory is proportional to the record count (24 bytes a
record), not to the file size; records are read back by offset when streamed.
The order, and so every record's *position* (0-based index in time order), is a
pure function of the file's bytes: the same file gives the same positions after
a restart.

Wire format of a streamed line (:meth:`Stream.line`): the original object with
one member ``"_position": N`` inserted first, compact JSON, ``\\n``-terminated.
A file whose records already contain ``_position`` is malformed.

:func:`replay` yields the lines of positions ``[start, stop)`` as ``bytes``
chunks, either as fast as possible (many lines per chunk), one record every
``delay`` seconds, or with the real gaps between record times divided by
``speed``. It never sleeps past a set *stopping* event: it raises
:class:`StreamAborted` instead, which WSGI servers treat as a dropped
connection, so the client sees an incomplete response and not a finished
stream.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import orjson

from framework.errors import DataSourceError
from framework.log import get_logger

TIME_FIELD = "time"
POSITION_FIELD = "_position"
IGNORED_FILES = frozenset({"ground_truth.json"})
"""``*.json`` files of a data directory that are not streams (the generator's answer key)."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_WAIT_SLICE = 3600.0  # seconds one sleep of the pacing lasts at most
BATCH_RECORDS = 2000
"""Records per chunk when no pacing holds them back."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_BOM = b"\xef\xbb\xbf"
_log = get_logger("api")


class StreamAborted(ConnectionAbortedError):
    """A stream ended early (server stopping, file changed): the response must not end normally."""


def parse_time(value: object) -> int:
    """Microseconds since 1970-01-01 UTC of a ``time`` value; ``ValueError`` if it is neither form."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return (moment - _EPOCH) // _MICROSECOND
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return round(value * 1_000_000)
    raise ValueError(value)


@dataclass(frozen=True)
class Unavailable:
    """A ``*.json`` file of the data directory that cannot be served, and why (one sentence)."""

    name: str
    path: Path
    reason: str


@dataclass(frozen=True, eq=False)
class Stream:
    """The time-ordered index of one JSON Lines file (see :func:`scan`)."""

    name: str
    path: Path
    times: array          # microseconds, sorted
    offsets: array        # byte offset of the character after each record's opening brace
    lengths: array        # bytes from there to the closing brace, inclusive
    canonical: bool       # every line is already compact JSON as orjson writes it
    first_time: object
    last_time: object
    size: int
    mtime_ns: int

    @property
    def records(self) -> int:
        return len(self.offsets)

    def open(self) -> BinaryIO:
        """Open the file for :meth:`line`/:meth:`batches`; ``DataSourceError`` if it changed since the scan."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise DataSourceError(f"{self.path} cannot be read any more ({exc.strerror}); restart the API.") from None
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            raise DataSourceError(
                f"{self.path} changed after the API indexed it; restart the API to serve the new content.")
        return open(self.path, "rb", buffering=1 << 16)

    def line(self, file: BinaryIO, position: int) -> bytes:
        """The wire line of ``position`` (``_position`` first, compact, ``\\n``-terminated)."""
        file.seek(self.offsets[position])
        length = self.lengths[position]
        body = file.read(length)
        if len(body) != length or body[-1:] != b"}":
            raise DataSourceError(f"{self.path} changed while it was streamed (record at position {position}).")
        if self.canonical:
            return b'{"_position":%d,%s\n' % (position, body)
        record = orjson.loads(b"{" + body)
        return orjson.dumps({POSITION_FIELD: position, **record}, option=orjson.OPT_APPEND_NEWLINE)

    def batches(self, file: BinaryIO, start: int, stop: int, size: int = BATCH_RECORDS) -> Iterator[bytes]:
        """Chunks of up to ``size`` wire lines for positions ``[start, stop)``."""
        line = self.line
        for low in range(start, stop, size):
            yield b"".join([line(file, p) for p in range(low, min(low + size, stop))])


def scan(path: Path, name: str | None = None) -> Stream:
    """Read ``path`` once, check every line and index it by time.

    Raises :class:`DataSourceError` naming the file and the 1-based line number
    of the first line that is not a JSON object with a valid ``time`` member.
    """
    path = Path(path)
    times, offsets, lengths = array("q"), array("q"), array("q")
    canonical = True
    first = last = None
    first_us = last_us = 0
    ordered = True
    offset = 0
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                here, offset = offset, offset + len(raw)
                text = raw.strip()
                if number == 1 and text.startswith(_BOM):
                    text = text[len(_BOM):].lstrip()
                if not text:
                    continue
                where = f"{path} line {number}"
                try:
                    record = orjson.loads(text)
                except orjson.JSONDecodeError as exc:
                    raise DataSourceError(f"{where} is not valid JSON ({exc.msg}); "
                                          "every line must be one JSON object.") from None
                if type(record) is not dict:
                    raise DataSourceError(f"{where} is a JSON {_kind(record)}, not an object; "
                                          "every line must be one JSON object.")
                if TIME_FIELD not in record:
                    raise DataSourceError(f"{where} has no {TIME_FIELD!r} member; every record needs one.")
                if POSITION_FIELD in record:
                    raise DataSourceError(f"{where} has a {POSITION_FIELD!r} member, which the API reserves "
                                          "for the record's position; rename it.")
                value = record[TIME_FIELD]
                try:
                    us = parse_time(value)
                except (ValueError, TypeError, OverflowError):
                    raise DataSourceError(
                        f"{where} has {TIME_FIELD}={orjson.dumps(value).decode()[:60]}, which is neither an "
                        "ISO-8601 date-time like 2026-01-05T08:00:00.000Z nor seconds since 1970.") from None
                if canonical and orjson.dumps(record) != text:
                    canonical = False
                if not times:
                    first, first_us, last, last_us = value, us, value, us
                else:
                    if us < first_us:
                        first, first_us = value, us
                    if us >= last_us:
                        last, last_us = value, us
                    elif us < times[-1]:
                        ordered = False
                times.append(us)
                offsets.append(here + raw.index(b"{") + 1)
                lengths.append(len(text) - 1)
    except OSError as exc:
        raise DataSourceError(f"{path} cannot be read ({exc.strerror}).") from None
    if not ordered:
        order = sorted(range(len(times)), key=times.__getitem__)
        times = array("q", (times[i] for i in order))
        offsets = array("q", (offsets[i] for i in order))
        lengths = array("q", (lengths[i] for i in order))
    return Stream(name=name or path.stem, path=path, times=times, offsets=offsets, lengths=lengths,
                  canonical=canonical, first_time=first, last_time=last,
                  size=st.st_size, mtime_ns=st.st_mtime_ns)


def _kind(value: object) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null")


@dataclass(frozen=True)
class Catalog:
    """The streams of a data directory, indexed once at start-up."""

    data_dir: Path
    streams: dict[str, Stream]
    unavailable: dict[str, Unavailable]

    @classmethod
    def load(cls, data_dir: Path, ignore: Iterable[str] = IGNORED_FILES) -> "Catalog":
        """Scan every ``*.json`` file directly in ``data_dir`` except ``ignore`` and hidden files.

        A file that fails :func:`scan` (or has a name unusable in a URL, or is a
        link leading outside ``data_dir``) is logged as an error and kept in
        :attr:`unavailable` with the reason; the other files are served.
        Raises :class:`DataSourceError` only if ``data_dir`` is not a directory.
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
        for path in sorted(data_dir.glob("*.json")):
            if path.name in ignored or path.name.startswith(".") or not path.is_file():
                continue
            name = path.stem
            started = time.perf_counter()
            try:
                if not NAME.match(name):
                    raise DataSourceError(f"{path} has a name that cannot be part of a URL; use letters, "
                                          "digits, '_' and '-' only.")
                if not path.resolve().is_relative_to(root):
                    raise DataSourceError(f"{path} leads outside the data directory {data_dir}; copy the file in.")
                stream = scan(path, name)
            except DataSourceError as exc:
                _log.error("stream {!r} is not served: {}", name, exc)
                unavailable[name] = Unavailable(name, path, str(exc))
                continue
            streams[name] = stream
            _log.info("stream {!r}: {} records from {} ({} .. {}) indexed in {:.2f} s", name, stream.records,
                      path, stream.first_time, stream.last_time, time.perf_counter() - started)
        if not streams:
            _log.warning("no stream is served: {} has no valid *.json file", data_dir)
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
