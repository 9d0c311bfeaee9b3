"""Read an NDJSON HTTP stream by source position, reconnecting without gap or repeat.

The wire contract: ``GET <url>?from=N`` answers ``application/x-ndjson``, one
JSON object per ``\\n``-terminated line, starting at position ``N``; the end of
the response is the end of the stream. A line's *position* is its
``"_position"`` member when present, else the previous line's position plus
one (so a generic NDJSON endpoint that honours ``from`` works too).

Contract of :meth:`NdjsonStream.lines`:

- yields ``(position, raw_line)`` with strictly increasing positions, each
  position at most once, the line without its ``\\n``; a line cut by a broken
  connection is never yielded;
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
    for position, line in stream.lines(start=0):
        ...
"""
from __future__ import annotations

import threading
from typing import Any, Iterator, Mapping

import orjson
import requests

from framework.errors import StreamError
from framework.log import get_logger

log = get_logger("http-stream")

POSITION_PREFIX = b'{"_position":'
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
    """The position of ``line``: its ``_position`` member, else ``previous + 1``."""
    if line.startswith(POSITION_PREFIX):
        end = line.find(b",", len(POSITION_PREFIX))
        if end < 0:
            end = line.find(b"}", len(POSITION_PREFIX))
        try:
            return int(line[len(POSITION_PREFIX):end])
        except ValueError:
            pass
    if b'"_position"' in line:
        try:
            value = orjson.loads(line).get("_position")
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return previous + 1


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

    def _connection(self, start: int, fast: bool = False) -> Iterator[tuple[int, bytes]]:
        params = {**self.params, "from": start, **({"delay": 0} if fast else {})}
        try:
            response = self.session.get(self.url, params=params, stream=True, timeout=self.timeout)
        except RETRIABLE as exc:
            raise _Retriable(f"{type(exc).__name__}: {exc}") from None
        self._response = response
        try:
            status = response.status_code
            if status >= 500 or status == 429:
                said = server_reason(response)
                raise _Retriable(f"HTTP {status}" + (f": {said}" if said else ""), answered=True)
            if status >= 400:
                said = server_reason(response)
                raise StreamError(f"GET {self.url}?from={start} answered HTTP {status}"
                                  f"{f' ({said})' if said else ''}; check the producer's endpoint and that the "
                                  "API serves this stream.")
            yield from self._split(response, start)
        except RETRIABLE as exc:
            raise _Retriable(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._response = None
            response.close()

    def _split(self, response: Any, start: int) -> Iterator[tuple[int, bytes]]:
        """Complete lines of ``response``, positioned; lines already read (a server repeat) are skipped."""
        previous = start - 1
        pending = b""
        for chunk in response.iter_content(chunk_size=CHUNK_SIZE):
            if not chunk:
                continue
            if pending:
                chunk = pending + chunk
            lines = chunk.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if not line.strip():
                    continue
                previous = line_position(line, previous)
                if previous >= self.next_position:
                    self.next_position = previous + 1
                    yield previous, line
        if pending.strip():
            # A clean end without a final newline: the last line is complete.
            previous = line_position(pending, previous)
            if previous >= self.next_position:
                self.next_position = previous + 1
                yield previous, pending
