"""Read an NDJSON HTTP stream by source position, reconnecting without gap or repeat.

The wire contract (``docs/producers-contract.md``): ``GET <url>?from=N`` answers
one record per ``\\n``-terminated line; the end of the response is the end of
the stream. A line's *position* is its ``"_position"`` member when present,
else the previous line's position plus one. The position of the first line
(the base of the implicit ones) must be *stated* by the server, because a
server that ignores ``from`` would otherwise make the producer send records
again:

- an integer ``"_position"`` member in the line itself, or
- the response header ``X-Stream-From: N`` (the position of the first line).

A response that states neither is taken to start at position 0, whatever
``from`` asked: when ``from`` > 0 it is closed unread and the stream is asked
again with ``from=0`` (so a plain file server and a server that honours
``from`` silently give the same, correct, numbering), and the lines before
``from`` are skipped here. A server stating a first position *beyond* the
requested one (``X-Stream-From`` > ``from``) skipped records: that raises
:class:`~framework.errors.StreamError`. Lines at positions already read are
skipped (a server that repeats is harmless).

Each yielded line is the record's bytes with the ``_position`` member cut out
(:func:`framework.records.split_position`); nothing is re-encoded.

Contract of :meth:`NdjsonStream.lines`:

- yields ``(position, record)`` with strictly increasing positions, each
  position at most once, the line without its ``\\n`` and without
  ``_position``; a line cut by a broken connection is never yielded;
- when the connection breaks (refused, reset, timed out, HTTP 5xx or 429), it
  logs a warning, waits ``backoff * 2**(attempt-1)`` seconds and reconnects
  with ``from`` = the next position; the attempt count restarts whenever a line
  arrives; after ``retries`` failed attempts in a row it raises
  :class:`~framework.errors.StreamError`;
- any other HTTP status (404, 400, ...) raises :class:`StreamError` at once;
- ``follow=True`` reconnects after a clean end too (every ``poll_interval``
  seconds) until ``stop`` is set; :meth:`abort` (from another thread) closes the
  current response so a blocked read returns at once;
- ``catch_up_to=P``: positions up to ``P`` (already in Kafka, to be skipped) are
  asked for with ``delay=0``; after the first line beyond ``P`` the stream is
  reopened with the normal parameters, so a restart does not wait through the
  pacing of records it will not send.

Minimal use::

    stream = NdjsonStream(requests.Session(), "http://127.0.0.1:5000/stream_data_metrics")
    for position, record in stream.lines(start=0):
        ...
"""
from __future__ import annotations

import threading
from typing import Any, Generator, Iterator, Mapping

import requests

from framework.errors import StreamError
from framework.log import get_logger
from framework.records import split_position

log = get_logger("http-stream")

FROM_HEADER = "X-Stream-From"
CHUNK_SIZE = 1 << 16
RETRIABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
             requests.exceptions.ContentDecodingError)


class _Retriable(Exception):
    """A failure worth reconnecting for; ``answered`` when the server answered (with its reason in the message)."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


def server_reason(response: Any, limit: int = 300) -> str:
    """What the server said in an error answer: the ``error`` member of a JSON body, else the text."""
    text = ""
    try:
        text = str(getattr(response, "text", "") or "")
    except Exception:  # noqa: BLE001 - a body that cannot be decoded says nothing
        return ""
    try:
        import json

        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            text = body["error"]
    except ValueError:
        pass
    return " ".join(text.split())[:limit]


def line_position(line: bytes, previous: int) -> int:
    """The position of ``line``: its integer ``_position`` member, else ``previous + 1``."""
    position, _ = split_position(line)
    return previous + 1 if position is None else position


class NdjsonStream:
    """One NDJSON endpoint, read from a position, with bounded reconnects."""

    def __init__(self, session: Any, url: str, *, params: Mapping[str, Any] | None = None, retries: int = 5,
                 backoff: float = 1.0, follow: bool = False, poll_interval: float = 1.0,
                 stop: threading.Event | None = None, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0) -> None:
        self.session = session
        self.url = url
        self.params = dict(params or {})
        self.retries = retries
        self.backoff = backoff
        self.follow = follow
        self.poll_interval = poll_interval
        self.stop = stop or threading.Event()
        self.timeout = (connect_timeout, read_timeout)
        self.next_position = 0
        self.reconnects = 0
        self._response: Any = None
        self._unstated = False  # the server states no positions: always read from 0

    def abort(self) -> None:
        """Close the current response (thread-safe enough: a blocked read then fails and the loop ends)."""
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a response that is being read may complain
                pass

    def lines(self, start: int = 0, catch_up_to: int = -1) -> Iterator[tuple[int, bytes]]:
        """Yield ``(position, line)`` from ``start`` on; see the module contract."""
        self.next_position = start
        failures = 0
        while not self.stop.is_set():
            fast = self.next_position <= catch_up_to
            connection = self._connection(self.next_position, fast)
            try:
                for position, line in connection:
                    failures = 0
                    yield position, line
                    if self.stop.is_set():
                        return
                    if fast and position >= catch_up_to:
                        break  # caught up: reopen with the normal pacing
                else:
                    fast = False
            except _Retriable as exc:
                if self.stop.is_set():
                    return
                failures += 1
                if failures > self.retries:
                    cause = (f"the API answered {exc}; fix what it reports" if exc.answered
                             else f"last: {exc}; is the API running?")
                    raise StreamError(
                        f"The stream at {self.url} failed {failures} times in a row ({cause}). Everything before "
                        f"position {self.next_position} was read; a restart resumes from there.") from None
                wait = self.backoff * 2 ** (failures - 1)
                log.warning("Stream {} broke ({}); reconnecting from position {} in {:.1f}s (attempt {}/{})",
                            self.url, exc, self.next_position, wait, failures, self.retries)
                self.reconnects += 1
                self.stop.wait(wait)
                continue
            except Exception:
                if self.stop.is_set():  # abort() closed the response under a read
                    return
                raise
            finally:
                connection.close()
            if fast:
                continue
            if not self.follow:
                return
            self.stop.wait(self.poll_interval)

    def _connection(self, start: int, fast: bool = False) -> Generator[tuple[int, bytes], None, None]:
        """The lines of one response from ``start`` on, positioned (module contract: stated first position)."""
        while True:
            asked = 0 if self._unstated else start
            response = self._open(asked, fast)
            try:
                declared = _declared_start(response)
                if declared is not None and declared > asked:
                    raise StreamError(
                        f"GET {self.url}?from={asked} answered from position {declared} ({FROM_HEADER} header), "
                        f"skipping positions {asked}..{declared - 1}; the server must start at the requested "
                        "position.")
                lines = _lines(response)
                first = next(lines, None)
                if first is None:
                    return
                position, _ = split_position(first)
                if position is None and declared is None:
                    self._unstated = True  # from now on, always read this server from the beginning
                    if asked > 0:  # the server's numbering is unknown: read from the beginning instead
                        log.info("{} states no position (no _position member, no {} header); reading it from "
                                 "position 0 and skipping the {} lines already read", self.url, FROM_HEADER, start)
                        continue
                    declared = 0
                base = declared if declared is not None else (position if position is not None else 0)
                if base < start:
                    log.info("{} answered from position {} instead of {}; skipping positions {}..{} (already read)",
                             self.url, base, start, base, start - 1)
                yield from self._positioned(first, lines, (declared if declared is not None else 0) - 1)
                return
            except RETRIABLE as exc:
                raise _Retriable(f"{type(exc).__name__}: {exc}") from None
            finally:
                self._response = None
                response.close()

    def _open(self, start: int, fast: bool) -> Any:
        """GET the stream from ``start``; an answer other than 2xx raises (retriable or not, module contract)."""
        params = {**self.params, "from": start, **({"delay": 0} if fast else {})}
        try:
            response = self.session.get(self.url, params=params, stream=True, timeout=self.timeout)
        except RETRIABLE as exc:
            raise _Retriable(f"{type(exc).__name__}: {exc}") from None
        self._response = response
        status = response.status_code
        if status >= 500 or status == 429:
            said = server_reason(response)
            response.close()
            raise _Retriable(f"HTTP {status}" + (f": {said}" if said else ""), answered=True)
        if status >= 400:
            said = server_reason(response)
            response.close()
            raise StreamError(f"GET {self.url}?from={start} answered HTTP {status}"
                              f"{f' ({said})' if said else ''}; check the producer's endpoint and that the "
                              "API serves this stream.")
        return response

    def _positioned(self, first: bytes, lines: Iterator[bytes], previous: int) -> Iterator[tuple[int, bytes]]:
        """``(position, record)`` of ``first`` and ``lines``; positions already read (a server repeat) are skipped."""
        line: bytes | None = first
        while line is not None:
            position, record = split_position(line)
            previous = previous + 1 if position is None else position
            if previous >= self.next_position:
                self.next_position = previous + 1
                yield previous, record
            line = next(lines, None)


def _declared_start(response: Any) -> int | None:
    """The ``X-Stream-From`` header of ``response`` as an int, or None."""
    headers = getattr(response, "headers", None) or {}
    raw = headers.get(FROM_HEADER)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _lines(response: Any) -> Iterator[bytes]:
    """The complete, non-blank lines of ``response`` without their ``\\n`` (a last line without one counts)."""
    pending = b""
    for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
        if not chunk:
            continue
        if pending:
            chunk = pending + chunk
        lines = chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():  # a clean end without a final newline: the last line is complete
        yield pending
