"""Run a simulation model in a child process and stream its encoded messages, in order, to the publisher.

:class:`~framework.producer.simulation.SimulationProducerABC` spends about half of its
CPU per message in the model (cadCAD's pipeline, the user's functions, JSON encoding)
and half publishing. In one process those halves take turns on one core; with the
model in a child process they run on two, and the publisher only sends bytes::

    with ModelProcess(ChatModel, runs=4, timesteps=500, key_field=None) as feed:
        for run, position, key, value, reason in feed.messages([(1, 0), (2, 0)], should_stop):
            ...

Each item is ``(run, position, key, value, reason)``, exactly what
:func:`encoded_messages` yields in-process for the same jobs: ``reason`` is None for a
publishable message, else the :class:`~framework.sources.simulation.BadMessage` text
with ``value`` = ``repr()`` of the item (the dead-letter record). Same model, seed and
jobs: same items in the same order, in either process (the model is deterministic).

**A fresh interpreter**, never a fork: the publisher has the Kafka client's threads
running, and a forked child could inherit one of their locks held (Python's
``multiprocessing`` docs; Python 3.12 warns about fork in a threaded process). Nor
``multiprocessing``'s spawn, which runs the parent's main script again in the child (a
script without an ``if __name__ == "__main__"`` guard would start a second producer).
The child is ``python -m framework.sources.model_process`` with the parent's
``sys.path``; it imports the model's module by name and talks to the parent through
its standard input and output with :mod:`multiprocessing.connection` (length-prefixed
pickles; what a model prints goes to standard error). So a model must be importable:
a class defined at module level of a module other than the script being run. For
any other class :func:`model_reference` says why not, and the producer simulates in
its own process instead (the same items, on one core).

**Flow control.** The child sends chunks of at most :data:`CHUNK` items, and a chunk
as soon as it is :data:`CHUNK_SECONDS` old (a slow model's messages are not held
back). A pipe holds little, so the child simulates at most a few chunks ahead of the
publisher: memory stays bounded whatever the run's length.

**Errors.** A model function that raises ends the stream after the items before the
failing timestep with the same :class:`~framework.errors.SimulationError` sentence as
in-process (none of that timestep's messages was yielded). A child that cannot import
the model, or dies (killed, out of memory), raises :class:`SimulationError` naming it
and its exit code. The child ignores SIGINT (Ctrl-C reaches the whole process group:
the publisher decides when to stop) and ends when the publisher closes the feed or
dies (its next send fails with a broken pipe).
"""
from __future__ import annotations

import gc
import importlib
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable, Iterator, Sequence

from framework.errors import DeclarationError, SimulationError
from framework.sources.simulation import BadMessage, SimulationModel, encode_message

__all__ = ["CHUNK", "CHUNK_SECONDS", "Encoded", "ModelProcess", "encoded_messages", "model_reference"]

#: items per chunk the child sends at most
CHUNK = 1024
#: seconds after which a chunk is sent even if not full
CHUNK_SECONDS = 0.05
#: seconds between two checks of ``should_stop`` while the child is silent
STOP_POLL = 0.1
#: True in the child: a producer must not run there (a model module that starts one at import time)
IN_MODEL_PROCESS = False
#: seconds the publisher waits for a child to import the model and say it is ready
START_TIMEOUT = 120.0
#: characters of ``repr()`` kept as the dead-letter value of a bad message
REPR_LIMIT = 100_000

#: ``(run, position, key, value, reason)``: a message ready to publish, or a bad one (``reason`` set)
Encoded = tuple[int, int, "bytes | None", bytes, "str | None"]


def encoded_messages(model: SimulationModel, jobs: Iterable[tuple[int, int]], key_field: str | None,
                     should_stop: Callable[[], bool] | None = None) -> Iterator[Encoded]:
    """Every message of ``jobs`` (``(run, first position)`` pairs, in order), encoded; see the module docstring."""
    for run, start in jobs:
        for position, item in model.simulate(run, start, should_stop=should_stop):
            try:
                key, value = encode_message(item, key_field)
            except BadMessage as exc:
                yield run, position, None, repr(item)[:REPR_LIMIT].encode(), str(exc)
            else:
                yield run, position, key, value, None


def model_reference(model: type[SimulationModel]) -> tuple[str, str] | str:
    """``(module, qualname)`` a child process can import ``model`` by, or the reason it cannot."""
    module, qualname = model.__module__, model.__qualname__
    if "<locals>" in qualname:
        return f"{qualname} is defined inside a function"
    if module in ("__main__", "__mp_main__"):
        return f"{qualname} is defined in the script being run (a child would have to run the script again)"
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not model:
        return f"{qualname} is not what its module {module!r} holds under that name (built at run time or loaded " \
               "from a file path)"
    return module, qualname


class ModelProcess:
    """A child process that simulates ``model`` (``runs``/``timesteps`` as the model's constructor takes them)."""

    def __init__(self, model: type[SimulationModel], runs: int, timesteps: int, key_field: str | None) -> None:
        reference = model_reference(model)
        if isinstance(reference, str):
            raise SimulationError(f"{model.__name__} cannot run in a child process: {reference}; define it at "
                                  "module level.")
        self.model, self.reference = model, reference
        self.runs, self.timesteps, self.key_field = runs, timesteps, key_field
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: Connection | None = None
        self._writer: Connection | None = None
        self._ended = False

    def start(self) -> "ModelProcess":
        """Start the child; it imports the model while the caller goes on (:meth:`messages` waits for it)."""
        process = self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, close_fds=True)
        assert process.stdout is not None and process.stdin is not None
        _widen_pipe(process.stdout.fileno())
        self._reader = Connection(os.dup(process.stdout.fileno()), writable=False)
        self._writer = Connection(os.dup(process.stdin.fileno()), readable=False)
        process.stdout.close()
        process.stdin.close()
        self._writer.send(("init", list(sys.path), self.reference, self.runs, self.timesteps, self.key_field))
        return self

    def __enter__(self) -> "ModelProcess":
        return self.start() if self._process is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def messages(self, jobs: Sequence[tuple[int, int]],
                 should_stop: Callable[[], bool] | None = None) -> Iterator[Encoded]:
        """The items of ``jobs`` from the child, in order; ends early (and stops the child) when ``should_stop()``."""
        if self._process is None:
            self.start()
        self._receive(START_TIMEOUT, "import the model")  # ("ready",)
        assert self._writer is not None
        self._writer.send(("job", list(jobs)))
        while True:
            while should_stop is not None and self._reader is not None and not self._reader.poll(STOP_POLL):
                if should_stop():
                    self.close()
                    return
            kind, payload = self._receive(None, "simulate")
            if kind == "items":
                yield from payload
                if should_stop is not None and should_stop():
                    self.close()
                    return
            elif kind == "end":
                self._ended = True
                return
            else:  # "error"
                raise _rebuild(payload)

    def _receive(self, timeout: float | None, doing: str) -> tuple[str, Any]:
        name = self.model.__name__
        assert self._reader is not None and self._process is not None
        if timeout is not None and not self._reader.poll(timeout):
            self.close()
            raise SimulationError(f"The process simulating {name} did not {doing} within {timeout:.0f} s.")
        try:
            message = self._reader.recv()
        except (EOFError, OSError):
            code = self._process.wait(5)
            raise SimulationError(f"The process simulating {name} (pid {self._process.pid}) ended with exit code "
                                  f"{code} before it finished; the messages acknowledged so far are kept, a "
                                  "restart resumes after them.") from None
        if message[0] == "unavailable":
            self.close()
            raise SimulationError(f"The process simulating {name} could not {doing}: {message[1]}; make the model "
                                  "importable by its module, or set PIPELINE_SIMULATION_PROCESS=false.")
        return message[0], message[1] if len(message) > 1 else None

    def close(self) -> None:
        """Stop the child (if running) and release the pipes; safe to call twice."""
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None
        process = self._process
        if process is not None and self._ended:
            try:
                process.wait(5)  # it sent everything and is exiting
            except subprocess.TimeoutExpired:
                pass
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let the pipe hold a few chunks (Linux's default is 64 KiB, half a chunk): fewer wake-ups of either side.

    ``F_SETPIPE_SZ`` (fcntl(2)); capped by ``/proc/sys/fs/pipe-max-size`` (1 MiB by default). Elsewhere, or
    when refused, the pipe keeps its size: only slower.
    """
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass


def _rebuild(payload: tuple[str, str]) -> Exception:
    kind, text = payload
    if kind == "DeclarationError":
        return DeclarationError(text)
    return SimulationError(text)


def _end_with_publisher(conn_in: Connection) -> None:
    """In the child: wait until the publisher's end of the pipe closes (it stopped or died), then exit."""
    try:
        conn_in.recv()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _dumps(message: Any) -> bytes:
    """``pickle.dumps`` without the memo: a chunk's items share no objects, and the memo cost 2 us per item
    (``Pickler.fast``, Python's pickle docs: "disables the usage of memo ... should not be used with
    self-referential objects")."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(message)
    return buffer.getvalue()


def _child_main() -> int:
    """The child (``python -m framework.sources.model_process``): import the model, say ready, run one job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # what the model prints goes to standard error, not into the protocol
    conn_in = Connection(os.dup(0), writable=False)
    try:
        _, path, reference, runs, timesteps, key_field = conn_in.recv()
        sys.path[:] = path
        # the child runs as __main__: mark the importable module, the one producers look at
        setattr(importlib.import_module("framework.sources.model_process"), "IN_MODEL_PROCESS", True)  # noqa: B010
        try:
            obj: Any = importlib.import_module(reference[0])
            for part in reference[1].split("."):
                obj = getattr(obj, part)
            model = obj(runs=runs, timesteps=timesteps)
            import cadCAD.engine.simulation  # noqa: F401 - imported before "ready" (pandas: most of the start-up)
            # the collector's full collections would walk every imported object (pandas, cadCAD) again and
            # again: keep them out, as the publisher does (framework.producer.base.frozen_heap)
            gc.freeze()
        except Exception as exc:  # noqa: BLE001 - reported to the publisher in one sentence
            out.send(("unavailable", f"{type(exc).__name__}: {exc}"))
            return 1
        out.send(("ready",))
        _, jobs = conn_in.recv()
        # the publisher closes its end when it stops or dies: end at once, also while the model is silent
        threading.Thread(target=_end_with_publisher, args=(conn_in,), daemon=True).start()
        chunk: list[Encoded] = []
        first_at = [0.0]

        def send_if_old() -> bool:  # asked between timesteps: a slow model's messages are not held back
            if chunk and time.monotonic() - first_at[0] >= CHUNK_SECONDS:
                out.send_bytes(_dumps(("items", chunk)))
                chunk.clear()
            return False

        try:
            for item in encoded_messages(model, jobs, key_field, should_stop=send_if_old):
                if not chunk:
                    first_at[0] = time.monotonic()
                chunk.append(item)
                if len(chunk) >= CHUNK:
                    out.send_bytes(_dumps(("items", chunk)))
                    chunk.clear()
        except (SimulationError, DeclarationError) as exc:
            out.send(("items", chunk))
            out.send(("error", (type(exc).__name__, str(exc))))
            return 0
        except Exception as exc:  # noqa: BLE001 - anything else a model raised, in one sentence
            out.send(("items", chunk))
            out.send(("error", ("SimulationError", f"{type(exc).__name__}: {exc}")))
            return 0
        out.send(("items", chunk))
        out.send(("end",))
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the publisher closed the feed or died: nothing left to do
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
