"""Process and port helpers shared by the local services (broker, PostgreSQL, Trino, Spark)."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def port_is_free(port: int, wait: float = 10.0) -> bool:
    """True when ``port`` on 127.0.0.1 can be bound, waiting up to ``wait`` seconds for it to free.

    The wait covers a server that was just killed: its threads may still hold
    the listening socket for a moment after the PID is gone.
    """
    deadline = time.monotonic() + wait
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.25)


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (a child of ours that exited) counts as gone and is reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
    except OSError:
        pass
    return True


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to end; True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.2)
    return not alive(pid)
