"""Replay a user's dataset files: index once, read lazily, pace the output, never re-encode a record.

A *stream* is one file of the data directory: ``<name>.jsonl``, ``<name>.ndjson``
or ``<name>.json``, holding either JSON Lines (UTF-8, one JSON value per line,
blank lines ignored, a byte-order mark allowed) or one JSON array of values
(``.json`` only: a file whose first byte is ``[`` and which is one valid JSON
array). Every line (array element) is a record and gets a position, whatever
it holds: a line that is not a JSON object (:func:`framework.records.parse_record`
decides) is *served as it is*, so the producer dead-letters it with the reason,
and one bad line never makes the whole stream unavailable.

**Order.** When the time field (``Settings.api_time_field``, default ``time``;
empty for none) holds a time in at least one record, the stream is in time
order: an ISO-8601 date-time (``2026-01-05T08:00:00.000Z``; no offset means UTC)
or a number of seconds since 1970-01-01 UTC; equal times keep file order, and a
record without a usable time (or not an object) stays right after the record
before it in the file. Otherwise the stream is in file order. A record's
*position* is its 0-based index in that order: a pure function of the file's
bytes and the time field, the same after a restart.

:func:`scan` reads a file once and keeps, per record, its sort key
(microseconds), byte offset, length and kind in ``array`` columns: memory is
proportional to the record count (about 25 bytes a record), not to the file
size; records are read back by offset when streamed.

Wire format of a streamed line (:meth:`Stream.line`): for an object, the
record's own bytes with ``"_position":N,`` spliced in after its opening brace
(``{"_position":N}`` for an empty object), nothing else changed, so numbers and
strings pass byte for byte; any other line as it is. Each line ends with
``\\n``; an array element written over several lines has its line breaks (only
whitespace outside strings in valid JSON) turned into spaces.

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
from framework.records import RecordError, parse_record

TIME_FIELD = "time"
POSITION_FIELD = "_position"
SUFFIXES = (".json", ".jsonl", ".ndjson")
IGNORED_FILES = frozenset({"ground_truth.json"})
"""Files of a data directory that are not streams (the generator's answer key)."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
BATCH_RECORDS = 2000
"""Records per chunk when no pacing holds them back."""
RAW, OBJECT, EMPTY = 0, 1, 2
"""Kinds of record: served as it is, an object (``_position`` spliced in), an empty object."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"
_LOWEST = -(1 << 63)
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.S)
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
class Unavailable:
    """A data file that cannot be served, and why (one sentence)."""

    name: str
    path: Path
    reason: str


@dataclass(frozen=True, eq=False)
class Stream:
    """The index of one data file (see :func:`scan`): sort keys, offsets, lengths and kinds by position."""

    name: str
    path: Path
    times: array          # sort key of each position: microseconds since 1970 (0 in file order), ascending
    offsets: array        # byte offset of each record's first byte
    lengths: array        # its length in bytes (surrounding whitespace excluded)
    kinds: bytes          # RAW, OBJECT or EMPTY
    timed: bool           # ordered by the time field (else file order)
    multiline: bool       # a JSON array file: records may span lines
    first_time: object
    last_time: object
    size: int
    mtime_ns: int
    time_field: str = TIME_FIELD
    not_objects: int = 0  # records served as they are (not JSON objects)
    untimed: int = 0      # objects without a usable time in a timed stream

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
        """The wire line of ``position`` (module doc: ``_position`` spliced into an object, nothing re-encoded)."""
        file.seek(self.offsets[position])
        length = self.lengths[position]
        body = file.read(length)
        kind = self.kinds[position]
        if len(body) != length or (kind != RAW and (body[:1] != b"{" or body[-1:] != b"}")):
            raise DataSourceError(f"{self.path} changed while it was streamed (record at position {position}).")
        if self.multiline:
            body = body.replace(b"\n", b" ").replace(b"\r", b" ")
        if kind == OBJECT:
            return b'{"_position":%d,%s\n' % (position, body[1:])
        if kind == EMPTY:
            return b'{"_position":%d}\n' % position
        return body + b"\n"

    def batches(self, file: BinaryIO, start: int, stop: int, size: int = BATCH_RECORDS) -> Iterator[bytes]:
        """Chunks of up to ``size`` wire lines for positions ``[start, stop)``."""
        line = self.line
        for low in range(start, stop, size):
            yield b"".join([line(file, p) for p in range(low, min(low + size, stop))])


class _Index:
    """Records collected in file order by :func:`scan`."""

    def __init__(self, time_field: str) -> None:
        self.time_field = time_field
        self.keys: list[int | None] = []
        self.offsets, self.lengths = array("q"), array("q")
        self.kinds = bytearray()
        self.first: tuple[int, object] | None = None  # (key, value) of the earliest time, first in the file
        self.last: tuple[int, object] | None = None   # of the latest time, last in the file
        self.not_objects = 0

    def add(self, offset: int, text: bytes) -> None:
        try:
            record = parse_record(text)
        except RecordError:
            record = None
        key = None
        if record is None:
            self.kinds.append(RAW)
            self.not_objects += 1
        else:
            self.kinds.append(OBJECT if record else EMPTY)
            if self.time_field and self.time_field in record:
                try:
                    key = parse_time(record[self.time_field])
                except (ValueError, TypeError, OverflowError):
                    key = None
                else:
                    value = record[self.time_field]
                    if self.first is None or key < self.first[0]:
                        self.first = (key, value)
                    if self.last is None or key >= self.last[0]:
                        self.last = (key, value)
        self.keys.append(key)
        self.offsets.append(offset)
        self.lengths.append(len(text))


def scan(path: Path, name: str | None = None, time_field: str = TIME_FIELD) -> Stream:
    """Read ``path`` once and index every record (module doc for the formats and the order).

    Raises :class:`DataSourceError` only when the file cannot be read, or is a
    ``.json`` file that starts like a JSON array but is neither a valid array
    nor JSON Lines (the sentence names the file and what is wrong).
    """
    path = Path(path)
    index = _Index(time_field)
    multiline = False
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(4096)
            f.seek(0)
            start = head[len(_BOM):] if head.startswith(_BOM) else head
            if path.suffix == ".json" and start.lstrip(_WS)[:1] == b"[":
                data = f.read()
                multiline = _scan_array(path, data, index)
            if not multiline:
                f.seek(0)
                _scan_lines(f, index)
    except OSError as exc:
        raise DataSourceError(f"{path} cannot be read ({exc.strerror}).") from None
    keys = index.keys
    timed = any(k is not None for k in keys)
    untimed = 0
    if timed:
        previous = _LOWEST
        filled = array("q")
        for k in keys:
            if k is None:
                untimed += 1
                filled.append(previous)
            else:
                filled.append(k)
                previous = k
        order = sorted(range(len(filled)), key=filled.__getitem__)
        times = array("q", (filled[i] for i in order))
        offsets = array("q", (index.offsets[i] for i in order))
        lengths = array("q", (index.lengths[i] for i in order))
        kinds = bytes(index.kinds[i] for i in order)
        first, last = index.first[1], index.last[1]  # type: ignore[index]
    else:
        times, offsets, lengths, kinds = array("q", bytes(8 * len(keys))), index.offsets, index.lengths, bytes(index.kinds)
        first = last = None
    return Stream(name=name or path.stem, path=path, times=times, offsets=offsets, lengths=lengths, kinds=kinds,
                  timed=timed, multiline=multiline, first_time=first, last_time=last, size=st.st_size,
                  mtime_ns=st.st_mtime_ns, time_field=time_field, not_objects=index.not_objects,
                  untimed=untimed - index.not_objects if timed else 0)


def _scan_lines(f: BinaryIO, index: _Index) -> None:
    offset = 0
    for number, raw in enumerate(f, start=1):
        here, offset = offset, offset + len(raw)
        stripped = raw.lstrip(_WS)
        if number == 1 and stripped.startswith(_BOM):
            stripped = stripped[len(_BOM):].lstrip(_WS)
        text = stripped.rstrip(_WS)
        if text:
            index.add(here + len(raw) - len(stripped), text)


def _scan_array(path: Path, data: bytes, index: _Index) -> bool:
    """Index the elements of a JSON array file; False when the file is JSON Lines after all."""
    body = data[len(_BOM):] if data.startswith(_BOM) else data
    skip = len(data) - len(body)
    try:
        whole = parse_array(body)
    except ValueError as exc:
        first_line = body.split(b"\n", 1)[0].strip(_WS)
        try:
            orjson.loads(first_line)
        except orjson.JSONDecodeError:
            raise DataSourceError(f"{path} starts like a JSON array but is not valid JSON ({exc}); serve one JSON "
                                  "array, or one JSON value per line.") from None
        return False
    if not whole:
        return True
    depth, element = 0, -1
    for token in _TOKEN.finditer(body):
        char = token.group()[0]
        if char == 34:  # a string
            continue
        if char in b"[{":
            depth += 1
            if depth == 1:
                element = token.end()
        elif depth == 1 and char in b",]":
            segment = body[element:token.start()]
            stripped = segment.lstrip(_WS)
            text = stripped.rstrip(_WS)
            if text:
                index.add(skip + element + len(segment) - len(stripped), text)
            element = token.end()
            if char == 93:
                depth -= 1
        elif char in b"]}":
            depth -= 1
    return True


def parse_array(data: bytes) -> list:
    """``data`` as one JSON array (``ValueError`` naming the problem if it is not one)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "number is infinity" not in str(exc):
            raise ValueError(str(exc)) from None
        import json
        from decimal import Decimal

        value = json.loads(data.decode("utf-8"), parse_float=Decimal)
    if not isinstance(value, list):
        raise ValueError("it is not an array")
    return value


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
                    if stopping.wait(wait):
                        raise StreamAborted("the API is stopping")
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
