"""The streaming replay API: every dataset file of the data directory as an HTTP stream.

Endpoints (all answers other than the streams are JSON)::

    GET /                     the streams with record counts, order, first/last time and URL
    GET /health               {"status": "ok", "streams": <served>, "unavailable": <not served>}
    GET /stream_data_<name>   the records of <data_dir>/<name>.json|.jsonl|.ndjson

A stream answers ``200`` with ``Content-Type: application/x-ndjson`` and a
chunked body that starts before the file is read to the end: one record per
line, in time order (``Settings.api_time_field``) or file order. An object is
sent as its own bytes with ``"_position":N,`` spliced in after the opening
brace (N = 0-based index in that order, stable across restarts), so every value
passes byte for byte; a record that is not a JSON object is sent as it is (its
position is the previous one plus one), so the producer dead-letters it. See
:mod:`apps.replay` for the file formats and the order. Lines end with
``\\n``. The end of the response is the end of the stream; a response cut off
without its final chunk (the server stopped, the file changed) is *not* a
complete stream. Headers ``X-Stream-Records`` (total records) and
``X-Stream-From`` (the position of the first line, what the producer checks)
are set. Query parameters:

- ``from=N`` first position to send (``0``..records; ``from=records`` is an empty stream),
- ``limit=N`` send at most N records,
- ``delay=S`` seconds between records, 0 to 3600 (default: ``Settings.api_delay``
  or the ``delay`` given to :func:`create_app`); ``delay=0`` is as fast as possible,
- ``speed=F`` replay the real gaps between record times divided by F, 0.001 to
  1e9 (not with ``delay``; only for a stream in time order).

Errors: an unknown name (or any unknown path) is a ``404`` listing the
available streams; names are only looked up in the start-up index, so no
request can reach another file. A malformed parameter is a ``400`` with one
sentence. A file that cannot be served (unreadable, a broken JSON array, a
name unusable in a URL or taken by another file) is logged at start-up, listed
under ``unavailable`` in ``/``, and its stream answers ``503`` with that
reason; the other streams are served. A bad *line* never makes a stream
unavailable.

Run it with ``python cmd/api_cmd.py``, or in-process with::

    server = serve_in_thread(create_app(settings), settings.api_host, settings.api_port)
    ...                      # server.url, e.g. http://127.0.0.1:5000
    server.stop()
"""
from __future__ import annotations

import math
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, get_sockaddr, make_server, select_address_family

from apps.replay import Catalog, Stream, replay
from framework.errors import ApiServerError, DataSourceError
from framework.log import get_logger
from framework.settings import MAX_DELAY_SECONDS, Settings

STREAM_PREFIX = "/stream_data_"
EXTENSION = "replay"
PARAMETERS = {
    "from": "first position to send, 0 to the record count (default 0)",
    "limit": "send at most this many records (default: all)",
    "delay": "seconds between records; 0 streams as fast as possible",
    "speed": "replay the real gaps between record times divided by this factor (instead of delay)",
}
_COUNT = re.compile(r"^\d{1,18}$")
#: a gap of days replayed at the slowest speed stays far below the longest sleep Python allows
MIN_SPEED, MAX_SPEED = 1e-3, 1e9
_log = get_logger("api")


@dataclass(frozen=True)
class ReplayState:
    """What the views share, kept in ``app.extensions["replay"]``.

    ``stopping`` is set by :meth:`ApiServer.stop`: every running stream then
    ends at once with an incomplete response.
    """

    catalog: Catalog
    delay: float
    stopping: threading.Event


class _BadRequest(ValueError):
    """A query parameter is malformed; the message is the 400 answer."""


def create_app(settings: Settings | None = None, data_dir: Path | str | None = None,
               delay: float | None = None) -> Flask:
    """Index the data directory and return the Flask app serving it.

    ``data_dir`` and ``delay`` override ``settings.data_dir`` and
    ``settings.api_delay`` (``settings`` default: ``Settings.from_env()``).
    Reads every data file once (this is the start-up scan). Raises
    :class:`SettingsError` for a negative delay and :class:`DataSourceError`
    if the data directory does not exist; a malformed file does not raise.
    """
    settings = settings or Settings.from_env()
    changes: dict[str, Any] = {}
    if data_dir is not None:
        changes["data_dir"] = Path(data_dir)
    if delay is not None:
        changes["api_delay"] = float(delay)
    if changes:
        settings = settings.replace(**changes)
    catalog = Catalog.load(settings.data_dir, time_field=settings.api_time_field)

    app = Flask(__name__)
    app.config["SERVICE_NAME"] = "streaming API"
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = ReplayState(catalog, settings.api_delay, threading.Event())
    app.add_url_rule("/", "index", _index)
    app.add_url_rule("/health", "health", _health)
    app.add_url_rule(STREAM_PREFIX + "<name>", "stream", _stream)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _state() -> ReplayState:
    return current_app.extensions[EXTENSION]


def _error(status: int, message: str, **extra: Any) -> Response:
    response = jsonify(error=message, **extra)
    response.status_code = status
    return response


def _available() -> list[str]:
    return sorted(_state().catalog.streams)


def _index() -> Response:
    state, base = _state(), request.host_url.rstrip("/")
    return jsonify(
        streams=[{"name": s.name, "url": base + STREAM_PREFIX + s.name, "records": s.records,
                  "order": f"time ({s.time_field})" if s.timed else "file", "not_objects": s.not_objects,
                  "first_time": s.first_time, "last_time": s.last_time, "file": s.path.name}
                 for s in sorted(state.catalog.streams.values(), key=lambda s: s.name)],
        unavailable=[{"name": u.name, "file": u.path.name, "error": u.reason}
                     for u in sorted(state.catalog.unavailable.values(), key=lambda u: u.name)],
        parameters=PARAMETERS, default_delay=state.delay)


def _health() -> Response:
    catalog = _state().catalog
    return jsonify(status="ok", streams=len(catalog.streams), unavailable=len(catalog.unavailable))


def _http_error(exc: HTTPException) -> Response:
    if exc.code == 404:
        return _error(404, f"No such path {request.path!r}; streams are served at "
                           f"{STREAM_PREFIX}<name>, available: {', '.join(_available()) or 'none'}.",
                      available=_available())
    return _error(exc.code or 500, exc.description or exc.name)


def _stream(name: str) -> Response:
    state = _state()
    stream = state.catalog.streams.get(name)
    if stream is None:
        broken = state.catalog.unavailable.get(name)
        if broken is not None:
            return _error(503, f"Stream {name!r} is not served: {broken.reason}")
        return _error(404, f"Unknown stream {name!r}; available: {', '.join(_available()) or 'none'}.",
                      available=_available())
    try:
        start, stop, delay, speed = _parameters(request.args, stream, state.delay)
    except _BadRequest as exc:
        return _error(400, str(exc))
    try:
        file = stream.open()
    except DataSourceError as exc:
        return _error(503, f"Stream {name!r} is not served: {exc}")
    _log.debug("stream {!r} requested: positions {}..{}, delay {}, speed {}", name, start, stop, delay, speed)
    body = replay(stream, file, start, stop, delay=delay, speed=speed, stopping=state.stopping)
    response = Response(body, mimetype="application/x-ndjson", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        "X-Stream-Records": str(stream.records), "X-Stream-From": str(start)})
    response.call_on_close(file.close)  # also when the body is never iterated (HEAD)
    return response


def _parameters(args: MultiDict[str, str], stream: Stream, default_delay: float
                ) -> tuple[int, int, float, float | None]:
    """``(start, stop, delay, speed)`` of a stream request; :class:`_BadRequest` on a bad value."""
    for key in args:
        if key not in PARAMETERS:
            raise _BadRequest(f"Unknown parameter {key!r}; known: {', '.join(PARAMETERS)}.")
        if len(args.getlist(key)) > 1:
            raise _BadRequest(f"Parameter {key!r} is given {len(args.getlist(key))} times; give it once.")
    start = _count(args, "from", 0)
    if start > stream.records:
        raise _BadRequest(f"from={start} is beyond the end of stream {stream.name!r}, which has "
                          f"{stream.records} records; use 0 to {stream.records}.")
    limit = _count(args, "limit", stream.records)
    stop = min(stream.records, start + limit)
    if "delay" in args and "speed" in args:
        raise _BadRequest("Give either delay (seconds between records) or speed (time factor), not both.")
    delay = _number(args, "delay", default_delay, f"seconds between records, from 0 to {MAX_DELAY_SECONDS:g}, "
                    "like 0.05", lambda v: 0 <= v <= MAX_DELAY_SECONDS)
    speed = _number(args, "speed", None, f"a time factor from {MIN_SPEED:g} to {MAX_SPEED:g} like 60 (a minute "
                    "of data per second)", lambda v: MIN_SPEED <= v <= MAX_SPEED)
    if speed is not None and not stream.timed:
        raise _BadRequest(f"Stream {stream.name!r} is in file order (no record has a {stream.time_field!r} time), "
                          "so speed cannot apply; use delay.")
    return start, stop, delay, speed


def _count(args: MultiDict[str, str], key: str, default: int) -> int:
    raw = args.get(key)
    if raw is None:
        return default
    if not _COUNT.match(raw):
        raise _BadRequest(f"{key}={raw!r} is not valid; expected a whole number not below 0.")
    return int(raw)


def _number(args: MultiDict[str, str], key: str, default: Any, expected: str, ok: Any) -> Any:
    raw = args.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not ok(value):
        raise _BadRequest(f"{key}={raw!r} is not valid; expected {expected}.")
    return value


# ------------------------------------------------------------------ serving
class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with its access log sent to loguru (DEBUG) instead of ``logging``."""

    protocol_version = "HTTP/1.1"  # chunked responses

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        _log.debug('{} "{}" {}', self.address_string(), self.requestline, code)

    def log(self, type: str, message: str, *args: Any) -> None:
        _log.log("ERROR" if type == "error" else "DEBUG", "{} {}", self.address_string(),
                 message % args if args else message)


def make_api_server(app: Flask, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """A threaded WSGI server for ``app``, bound and listening but not serving yet.

    ``port=0`` picks a free port; ``server.port`` is the one bound. Raises
    :class:`ApiServerError` (instead of werkzeug's ``sys.exit``) when the
    address cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise ApiServerError(f"Port {port} is not valid; use 1 to 65535, or 0 for a free port.")
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ApiServerError(
            f"The streaming API cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc}); "
            "stop the program using that port or choose another one with --port or PIPELINE_API_PORT.") from None
    try:
        server = make_server(host, sock.getsockname()[1], app, threaded=True,
                             request_handler=_RequestHandler, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket
    server.log = lambda type, message, *args: _log.error(  # type: ignore[method-assign]
        "{}", message % args if args else message)
    return server


class ApiServer:
    """A running API server (see :func:`serve_in_thread`); also a context manager that stops it."""

    def __init__(self, server: BaseWSGIServer, thread: threading.Thread, app: Flask) -> None:
        self._server, self._thread, self._app = server, thread, app
        self._stopped = False
        self.host: str = server.host
        self.port: int = server.port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:5000``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end running streams (incomplete responses), close the socket.

        Idempotent. Blocks until the accept loop has ended (at most about
        ``timeout`` seconds for the thread to finish).
        """
        if self._stopped:
            return
        self._stopped = True
        state = self._app.extensions.get(EXTENSION)
        if state is not None:
            state.stopping.set()
        self._server.shutdown()
        self._thread.join(timeout)
        self._server.server_close()
        service_log(self._app).info("stopped ({})", self.url)

    def serve_until_signal(self) -> None:
        """Block until SIGTERM or Ctrl-C (main thread only), then :meth:`stop`."""
        import signal

        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def __enter__(self) -> "ApiServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(app: Flask, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """Serve ``app`` from a daemon thread; returns once the socket listens.

    Requests are handled in their own threads. ``port=0`` picks a free port
    (read it from the handle's ``port`` or ``url``). Call ``stop()`` (or use the
    handle in a ``with`` block) to end it. Raises :class:`ApiServerError` if the
    address cannot be bound.
    """
    server = make_api_server(app, host, port)
    state = app.extensions.get(EXTENSION)
    if state is not None:
        state.stopping.clear()  # an app stopped once can be served again
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"api-{server.port}", daemon=True)
    thread.start()
    handle = ApiServer(server, thread, app)
    service_log(app).info("listening on {}", handle.url)
    return handle


def service_log(app: Flask) -> Any:
    """The logger of the service ``app`` is: its ``SERVICE_NAME`` config (default ``streaming API``) as component.

    So the replay API logs as ``streaming-api`` and the game API as ``game-api``.
    """
    name = str(app.config.get("SERVICE_NAME", "streaming API"))
    return get_logger(name.lower().replace(" ", "-"))
