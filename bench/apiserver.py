"""The streaming API in a process of its own, as deployed (``apps.api``), and a plain client for it.

The API runs in a child process so that it does not share the producer's
interpreter lock: in a deployment the API and the producers are separate
services. :class:`ApiProcess` starts ``python -m bench.apiserver
DATA_DIR DELAY``, which serves ``DATA_DIR`` on a free port of 127.0.0.1 and
prints ``URL <base url>``; :meth:`ApiProcess.stop` sends SIGTERM to that child
(by its PID) and waits for it. The child runs in a session of its own, so a terminal's Ctrl-C
reaches only the benchmark, which stops it.

:func:`read_stream` is the "plain streaming client" the API section measures:
one GET, the body read in 64 KiB chunks, newlines counted, nothing parsed.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from bench.errors import BenchError
from bench.stats import Throughput
from framework.log import get_logger

log = get_logger("bench")

READY_PREFIX = "URL "
READ_CHUNK = 1 << 16

#: API processes stopped because a Ctrl-C unwound their ``with`` block (for the command's closing line)
STOPPED_BY_INTERRUPT: list[str] = []


class ApiProcess:
    """The streaming API serving ``data_dir`` (``delay`` seconds between records by default), in a child process."""

    def __init__(self, data_dir: Path, delay: float = 0.0, start_timeout: float = 60.0) -> None:
        self.data_dir = Path(data_dir)
        self.delay = delay
        self.start_timeout = start_timeout
        self.url = ""
        self._proc: subprocess.Popen | None = None

    def start(self) -> "ApiProcess":
        """Start the child and wait for its URL; :class:`BenchError` if it does not come up."""
        log_file = self.data_dir.parent / f"{self.data_dir.name}-api.log"
        with open(log_file, "ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "bench.apiserver", str(self.data_dir), str(self.delay)],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                start_new_session=True)  # a terminal's Ctrl-C reaches the benchmark only; it stops this child
        line = _readline(self._proc, self.start_timeout)
        if not line.startswith(READY_PREFIX):
            self.stop()
            said = log_file.read_text(errors="replace").strip()[-500:] if log_file.is_file() else ""
            raise BenchError(f"The streaming API for {self.data_dir} did not start; its log {log_file} ends "
                             f"with: {said or '(nothing)'}")
        self.url = line[len(READY_PREFIX):].strip()
        log.info("Streaming API (pid {}) serving {} at {}", self._proc.pid, self.data_dir, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child started here, wait, SIGKILL if it does not end. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> "ApiProcess":
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        pid = self._proc.pid if self._proc is not None and self._proc.poll() is None else None
        self.stop()
        if pid is not None and exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            STOPPED_BY_INTERRUPT.append(f"the streaming API (pid {pid})")


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    """The child's first stdout line, or '' after ``timeout`` seconds or when it exits."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


def read_stream(url: str, params: Mapping[str, Any] | None = None, session: Any = None) -> Throughput:
    """Read a whole NDJSON stream as a plain client; records (lines), bytes and seconds from request to end."""
    import requests

    http = session or requests.Session()
    started = time.perf_counter()
    records = size = 0
    with http.get(url, params=dict(params or {}), stream=True, timeout=(10, 120)) as response:
        if response.status_code != 200:
            raise BenchError(f"GET {url} answered HTTP {response.status_code}; is the stream served?")
        for chunk in response.iter_content(chunk_size=READ_CHUNK):
            records += chunk.count(b"\n")
            size += len(chunk)
    return Throughput(records, size, time.perf_counter() - started)


def main(argv: list[str]) -> int:
    """Child entry point: serve ``argv[0]`` with default delay ``argv[1]`` until SIGTERM."""
    from apps.api import create_app, serve_in_thread
    from framework.log import configure_logging
    from framework.settings import Settings

    configure_logging("WARNING")
    app = create_app(Settings.from_env(), data_dir=Path(argv[0]), delay=float(argv[1]))
    server = serve_in_thread(app, "127.0.0.1", 0)
    print(f"{READY_PREFIX}{server.url}", flush=True)
    server.serve_until_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
