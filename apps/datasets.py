"""A user's dataset file as a stream: formats, order, positions and wire lines, never re-encoding a record.

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

Used by :mod:`apps.replay` (the catalog and the pacing) and :mod:`apps.api`.
"""
from __future__ import annotations

import math
import os
import re
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO, Iterator

import orjson

from framework.errors import DataSourceError
from framework.records import RecordError, parse_record

TIME_FIELD = "time"
POSITION_FIELD = "_position"
SUFFIXES = (".json", ".jsonl", ".ndjson")
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
        times = array("q", bytes(8 * len(keys)))
        offsets, lengths, kinds = index.offsets, index.lengths, bytes(index.kinds)
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
