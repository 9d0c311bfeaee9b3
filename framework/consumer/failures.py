"""An exception that crossed Py4J or a Spark query, reduced to one sentence: its innermost cause and the remedy.

A failure inside a ``foreachBatch`` function reaches the driver as a Java
``StreamingQueryException`` wrapping a ``PythonException`` wrapping the Python
traceback ("An exception was raised by the Python Proxy. Return Message:
Traceback ..."), itself often wrapping a Java ``SparkException`` and its
``Caused by:`` chain: hundreds of lines whose first line says nothing.
:func:`explain` finds the innermost cause and words it for the user:

======================  ==============================================================
kind                    recognised by
======================  ==============================================================
``data_loss``           ``OffsetOutOfRangeException``, ``KAFKA_DATA_LOSS``, "Some data
                        may have been lost": names topic, partitions and offsets gone,
                        and the two remedies (``fail_on_data_loss = False`` or a new
                        checkpoint)
``output``              ``PermissionError``, ``FileNotFoundError``, ``NotADirectoryError``,
                        ``Read-only file system``... on a path: names the path
``other``               the innermost ``Caused by:`` / Python exception line
======================  ==============================================================

:func:`reported_failures` applies this to a command's body: such an exception
becomes a :class:`~framework.errors.ConsumerError` (or
:class:`~framework.errors.OutputError`) with the sentence, and the full text goes
to the log at DEBUG level and to a file under ``<state_dir>/errors/`` that the
sentence names. Exceptions of the framework (already one sentence) and plain
Python bugs outside Spark pass unchanged.
"""
from __future__ import annotations

import errno
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from framework.errors import ConsumerError, FrameworkError, OutputError
from framework.log import get_logger

log = get_logger("consumer")

_CAUSED_BY = re.compile(r"^\s*Caused by:\s*(.+)$")
_PY_EXC = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)):\s?(.*)$")
#: the last line of a Python traceback: any exception class (pyarrow's ``ArrowInvalid`` ends in neither word)
_PY_LAST = re.compile(r"^([A-Za-z_][\w.]*):\s(.*)$")
_JAVA_EXC = re.compile(r"^((?:[a-z_][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)):?\s*(.*)$")
_PARTITION = re.compile(r"(?:partition[= ]|TopicPartition: ?|for partition )([A-Za-z0-9._-]+?)-(\d+)\b")
_OFFSET = re.compile(r"(?:offset[= ]|offset was changed from |Cannot fetch offset |fetch offset )(\d+)(?: to (\d+))?")
_DATA_LOSS = ("OffsetOutOfRange", "KAFKA_DATA_LOSS", "Some data may have been lost", "offset was changed from")
_OS_ERROR_NAMES = ("PermissionError", "FileNotFoundError", "NotADirectoryError", "IsADirectoryError",
                   "FileExistsError", "OSError", "java.nio.file.AccessDeniedException",
                   "java.io.FileNotFoundException", "java.nio.file.FileSystemException")
_QUOTED_PATH = re.compile(r"""['"](/[^'"]+)['"]|((?:file:)?/[\w./@%+=:,-]+)""")


@dataclass(frozen=True)
class Cause:
    """The innermost cause of a failure: its kind, the exception type and message, the full text."""

    kind: str            # data_loss, output or other
    type_name: str       # e.g. PermissionError, org.apache.kafka...OffsetOutOfRangeException
    message: str
    text: str            # every line of the original failure, for the trace file

    @property
    def line(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


def failure_text(exc: BaseException | Any) -> str:
    """Every line Spark and Py4J attach to ``exc`` (Java stack, Python traceback, causes)."""
    parts = []
    for attr in ("desc", "stackTrace"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            parts.append(value)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            parts.append(str(java.toString()))
        except Exception:  # noqa: BLE001 - the JVM may be gone already
            pass
    parts.append(str(exc))
    cause = getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
    if isinstance(cause, BaseException) and cause is not exc:
        parts.append(failure_text(cause))
    return "\n".join(parts)


def root_cause(exc: BaseException | Any) -> Cause:
    """The innermost cause named in ``exc``'s text (see the module table for the kinds)."""
    text = failure_text(exc)
    lines = [line.rstrip() for line in text.splitlines()]
    if any(marker in text for marker in _DATA_LOSS):
        line = next((ln.strip() for ln in lines if any(m in ln for m in _DATA_LOSS)), "")
        return Cause("data_loss", "OffsetOutOfRangeException", line, text)
    candidates: list[tuple[str, str]] = []
    in_traceback = False
    for raw in lines:
        line = raw.strip()
        if line.endswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        caused = _CAUSED_BY.match(raw)
        if caused:
            line = caused.group(1).strip()
        if in_traceback and raw and not raw[0].isspace():  # frames are indented; the exception line is not
            in_traceback = False
            last = _PY_LAST.match(line)
            if last and not last.group(1).startswith(("py4j.", "Py4J")):
                candidates.append((last.group(1), last.group(2).strip()))
                continue
        for pattern in (_PY_EXC, _JAVA_EXC):
            match = pattern.match(line)
            if match and not match.group(1).startswith(("py4j.", "Py4J")):
                candidates.append((match.group(1), match.group(2).strip()))
                break
    os_errors = [c for c in candidates if c[0] in _OS_ERROR_NAMES or "Read-only file system" in c[1]]
    if os_errors:
        name, message = os_errors[-1]
        return Cause("output", name, message, text)
    if candidates:
        # the last Python exception line is the innermost cause of a Python traceback; Java lists
        # its innermost cause last too ("Caused by:")
        name, message = candidates[-1]
        return Cause("other", name, message, text)
    first = next((ln.strip() for ln in lines if ln.strip()), type(exc).__name__)
    return Cause("other", type(exc).__name__, first[:500], text)


def explain(exc: BaseException | Any, *, consumer: str = "", topic: str = "", checkpoint: Path | str | None = None,
            settings: Any = None) -> str:
    """One sentence naming the innermost cause of ``exc`` and what to do about it.

    With ``settings`` (and ``topic``, ``checkpoint``), a data loss is described
    from Kafka's earliest offsets and the checkpoint: every partition, exact ranges.
    """
    cause = root_cause(exc)
    who = f"consumer {consumer!r}" if consumer else "the consumer"
    if cause.kind == "data_loss":
        gone = gone_offsets(settings, topic, Path(checkpoint)) if settings and topic and checkpoint else None
        return data_loss_sentence(cause, who, topic, checkpoint, gone)
    if cause.kind == "output":
        return output_sentence(cause.type_name, cause.message, _path_in(cause.message))
    return f"{cause.line[:500]}"


def data_loss_sentence(cause: Cause, who: str, topic: str, checkpoint: Path | str | None,
                       gone: Mapping[int, tuple[int, int]] | None = None) -> str:
    """The data-loss sentence; ``gone`` ({partition: (first gone, first kept)}, see :func:`gone_offsets`)
    lists every partition, where Spark's own message names only the first task that failed."""
    if gone:
        where = _gone_ranges(topic, gone)
    else:
        partitions: dict[str, set[int]] = {}
        for name, number in _PARTITION.findall(cause.text):
            partitions.setdefault(name, set()).add(int(number))
        offsets = sorted({int(o) for pair in _OFFSET.findall(cause.text) for o in pair if o})
        topics = sorted(partitions) or ([topic] if topic else [])
        where = "; ".join(f"topic {t!r} partition{'s' if len(partitions.get(t, ())) > 1 else ''} "
                          f"{', '.join(str(p) for p in sorted(partitions.get(t, ()))) or '?'}" for t in topics)
        where = (where or "some partitions") + (f", offsets from {offsets[0]}" if offsets else "")
    fresh = f"delete the checkpoint {checkpoint}" if checkpoint else "give the consumer a new checkpoint"
    return (f"Records that {who} had not read yet were deleted from Kafka (by retention or a deletion): "
            f"{where}; declare `fail_on_data_loss = False` on the consumer to skip what is gone and go on, or "
            f"{fresh} to read again what is left.")


def _gone_ranges(topic: str, gone: Mapping[int, tuple[int, int]]) -> str:
    parts = sorted(gone)
    ranges = {gone[p] for p in parts}
    plural = "s" if len(parts) > 1 else ""
    if len(ranges) == 1:
        first, kept = next(iter(ranges))
        each = " of each" if len(parts) > 1 else ""
        return (f"topic {topic!r} partition{plural} {', '.join(map(str, parts))}, offsets {first} to {kept - 1}"
                f"{each}")
    return f"topic {topic!r} " + ", ".join(f"partition {p} offsets {gone[p][0]} to {gone[p][1] - 1}" for p in parts)


def gone_offsets(settings: Any, topic: str, checkpoint: Path) -> dict[int, tuple[int, int]]:
    """``{partition: (next offset to read, earliest offset Kafka still has)}`` where the first is below the second.

    Compares the checkpoint's last committed offsets with Kafka's earliest
    offsets now; empty when nothing is gone or Kafka cannot be asked.
    """
    from framework.admin import KafkaAdmin
    from framework.consumer.progress import committed_offsets

    committed = committed_offsets(Path(checkpoint)).get(topic, {})
    if not committed:
        return {}
    try:
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        with KafkaAdmin(settings, timeout=10.0) as admin:
            specs = {TopicPartition(topic, p): OffsetSpec.EARLIEST for p in committed}
            earliest = {tp.partition: int(o.offset) for tp, o in admin.client.list_partition_offsets(specs).items()}
    except Exception as exc:  # noqa: BLE001 - the sentence falls back to what Spark said
        log.debug("Could not read the earliest offsets of {}: {}", topic, exc)
        return {}
    return {p: (committed[p], earliest[p]) for p in sorted(committed) if p in earliest and committed[p] < earliest[p]}


def output_sentence(type_name: str, message: str, path: str | None) -> str:
    short = type_name.rsplit(".", 1)[-1]
    target = path or "the output directory"
    hint = _file_in_the_way(path)
    if hint:
        return (f"Cannot write {target}: {hint} is a regular file, not a directory; point PIPELINE_OUTPUT_DIR "
                "(and PIPELINE_CHECKPOINT_DIR) at a directory.")
    return (f"Cannot write {target} ({short}: {message}); make the output directory writable (owner, mode, "
            "`chattr -i`, free space) or point PIPELINE_OUTPUT_DIR elsewhere; the batch was not committed and "
            "the next run writes it again.")


def _path_in(message: str) -> str | None:
    match = _QUOTED_PATH.search(message)
    if not match:
        return None
    path = match.group(1) or match.group(2)
    return path[len("file:"):] if path.startswith("file:") else path


def _file_in_the_way(path: str | None) -> str | None:
    """The first ancestor of ``path`` (or ``path`` itself) that exists as a regular file."""
    if not path:
        return None
    current = Path(path)
    for candidate in [current, *current.parents]:
        if candidate.is_file():
            return str(candidate)
    return None


def write_trace(text: str, state_dir: Path | str | None, label: str) -> Path | None:
    """Write ``text`` to ``<state_dir>/errors/<time>-<label>.txt``; the path, or None if it cannot be written."""
    if state_dir is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "failure"
    path = Path(state_dir) / "errors" / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        return None
    return path


def _crossed_spark(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("py4j", "pyspark")) or "Py4J" in type(exc).__name__


@contextmanager
def reported_failures(what: str, state_dir: Path | str | None = None) -> Iterator[None]:
    """Turn a Spark/Py4J exception or an OS error on the output into one sentence (a FrameworkError).

    ``what`` names the work ("consumer 'parquet'"), ``state_dir`` where the full
    trace file goes (None: only the DEBUG log). A :class:`FrameworkError` whose
    message still carries a Java/Python dump is reduced the same way.
    """
    try:
        yield
    except FrameworkError as exc:
        text = str(exc)
        if "Traceback (most recent call last)" not in text and "\n\tat " not in text and "Caused by:" not in text:
            raise
        raise _reduced(exc, what, state_dir, type(exc)) from None
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE) or exc.filename is None:
            raise
        raise OutputError(output_sentence(type(exc).__name__, exc.strerror or str(exc), exc.filename)) from None
    except Exception as exc:
        if not _crossed_spark(exc):
            raise
        raise _reduced(exc, what, state_dir, ConsumerError) from None


def _reduced(exc: BaseException, what: str, state_dir: Path | str | None, kind: type) -> FrameworkError:
    cause = root_cause(exc)
    log.debug("{} failed; full trace:\n{}", what, cause.text)
    trace = write_trace(cause.text, state_dir, what)
    sentence = explain(exc)
    if cause.kind == "output":
        kind = OutputError
    elif not sentence.startswith(("Records", "Cannot")):
        sentence = f"{what[:1].upper()}{what[1:]} failed: {sentence}"
    suffix = f" (full trace: {trace})" if trace else ""
    error: FrameworkError = kind(sentence + suffix)
    return error



def check_output_dirs(settings: Any) -> None:
    """Raise :class:`OutputError` now if the output or checkpoint directory cannot be made.

    Checked before anything starts: a directory setting that names a regular
    file (or lies under one), or whose nearest existing ancestor is not
    writable. Creates nothing.
    """
    for var, path in (("PIPELINE_OUTPUT_DIR", Path(settings.output_dir)),
                      ("PIPELINE_CHECKPOINT_DIR", Path(settings.checkpoint_root))):
        in_the_way = _file_in_the_way(str(path))
        if in_the_way:
            raise OutputError(f"{var} {path} cannot be a directory: {in_the_way} is a regular file; point {var} "
                              "at a directory (it is created if missing).")
        existing = next((p for p in [path, *path.absolute().parents] if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{var} {path} is not writable ({existing} does not let this user create files); "
                              f"make it writable or point {var} elsewhere.")
