"""Progress, consumer lag and the run summary of a consumer, from Spark's own query progress.

Spark reports, for every micro-batch, the offsets it read up to
(``sources[].endOffset``) and the latest offsets it saw in Kafka
(``sources[].latestOffset``); their difference, summed over partitions, is the
*consumer lag*: records already in Kafka that the consumer has not processed.
Spark shows neither in its logs; :class:`ProgressTracker` logs one line per
micro-batch with it.

Everything here except :meth:`ProgressTracker.listener` and :meth:`~ProgressTracker.sweep` works on
plain dicts, so it is unit-testable without Spark.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from framework.errors import ConsumerError
from framework.log import get_logger

log = get_logger("progress")


# ----------------------------------------------------------------------------- offsets
def topic_offsets(offsets: str | Mapping[str, Any] | None, topic: str) -> dict[int, int]:
    """``{partition: offset}`` of ``topic`` in a Kafka source offset (JSON text or dict)."""
    if offsets is None or offsets == "":
        return {}
    data = json.loads(offsets) if isinstance(offsets, str) else offsets
    return {int(p): int(o) for p, o in (data.get(topic) or {}).items()}


def lag(processed: Mapping[int, int], latest: Mapping[int, int]) -> int:
    """Records in ``latest`` beyond ``processed``, summed over partitions (never negative).

    A partition missing from ``processed`` counts from offset 0.
    """
    return sum(max(0, end - processed.get(p, 0)) for p, end in latest.items())


def committed_offsets(checkpoint: Path) -> dict[str, dict[int, int]]:
    """``{topic: {partition: next offset}}`` of the last committed batch in a Spark checkpoint.

    Reads Spark's offset log (``offsets/<batch>``, third line on) for the highest
    batch that has a ``commits/<batch>`` entry; empty when nothing was committed.
    """
    commits = [int(p.name) for p in (checkpoint / "commits").glob("[0-9]*") if p.name.isdigit()]
    if not commits:
        return {}
    return _offset_file(checkpoint / "offsets" / str(max(commits)), skip=2) or {}


def planned_records(checkpoint: Path, batch_id: int) -> int | None:
    """Kafka records in micro-batch ``batch_id`` of a checkpoint's query, or None when it cannot tell.

    Spark writes a batch's end offsets to ``offsets/<batch_id>`` before running
    it; its start offsets are the previous batch's end offsets (for batch 0 the
    query's initial offsets, ``sources/0/0``). Offsets count transaction markers
    and compacted-away records too, so this can be a little above the rows read.
    """
    try:
        end = _offset_file(checkpoint / "offsets" / str(batch_id), skip=2)
        start = (_offset_file(checkpoint / "offsets" / str(batch_id - 1), skip=2) if batch_id > 0
                 else _offset_file(checkpoint / "sources" / "0" / "0", skip=0))
    except (ValueError, AttributeError):  # not the format this expects: the size is unknown
        return None
    if not end or start is None:
        return None
    total = 0
    for topic, parts in end.items():
        for partition, offset in parts.items():
            begin = start.get(topic, {}).get(partition)
            if begin is None or begin < 0:
                return None
            total += max(0, offset - begin)
    return total


def batch_end_offsets(checkpoint: Path, batch_id: int) -> dict[str, dict[int, int]] | None:
    """``{topic: {partition: next offset}}`` that micro-batch ``batch_id`` reads up to (None when unknown)."""
    try:
        return _offset_file(checkpoint / "offsets" / str(batch_id), skip=2)
    except (ValueError, AttributeError):
        return None


def _offset_file(path: Path, skip: int) -> dict[str, dict[int, int]] | None:
    """The ``{topic: {partition: offset}}`` lines of a Spark offset file (after ``skip`` lines), merged.

    None when the file cannot be read or holds no such line; a malformed line raises ``ValueError``.
    """
    try:
        lines = path.read_text(errors="replace").splitlines()[skip:]
    except OSError:
        return None
    result: dict[str, dict[int, int]] = {}
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            for topic, parts in json.loads(line).items():
                result[topic] = {int(p): int(o) for p, o in parts.items()}
    return result or None


#: the file beside Spark's logs in a checkpoint that names the Kafka topic id the checkpoint's offsets belong to
TOPIC_ID_FILE = "_pipeline_topic_id"


def check_topic_identity(checkpoint: Path, topic: str, topic_id: str | None) -> None:
    """Stop when ``checkpoint``'s offsets belong to an earlier topic of the same name.

    A topic deleted and recreated keeps its name but gets a new id (KIP-516); the
    checkpoint's offsets then name records the new topic does not hold, and Spark
    skips the new records below them without a word. The id is recorded when a
    checkpoint starts (or first seen by this version) and compared on every start.
    ``topic_id`` None (a broker without ids) checks nothing.

    Raises :class:`~framework.errors.ConsumerError` naming both ids and the remedy.
    """
    if topic_id is None:
        return
    marker = checkpoint / TOPIC_ID_FILE
    known = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
    if known and known != topic_id and not checkpoint_is_fresh(checkpoint):
        raise ConsumerError(
            f"Topic {topic!r} was deleted and recreated since checkpoint {checkpoint} last read it (topic id "
            f"{known}, now {topic_id}), so its offsets name records the new topic does not hold; to read the new "
            f"topic from its start, delete {checkpoint} and the consumer's output of this topic (or point "
            "PIPELINE_CHECKPOINT_DIR and PIPELINE_OUTPUT_DIR at new directories).")
    if known != topic_id:
        checkpoint.mkdir(parents=True, exist_ok=True)
        marker.write_text(topic_id + "\n", encoding="utf-8")


def checkpoint_is_fresh(checkpoint: Path) -> bool:
    """True when no batch was ever planned in ``checkpoint`` (a new query)."""
    offsets = checkpoint / "offsets"
    return not offsets.is_dir() or not any(p.name.isdigit() for p in offsets.iterdir())


# ----------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class BatchReport:
    """What one micro-batch of one topic did."""

    topic: str
    batch_id: int
    input_rows: int
    written: int | None
    quarantined: int | None
    rows_per_second: float
    duration_s: float
    lag: int | None

    def line(self) -> str:
        split = ("" if self.written is None else
                 f" ({self.written} written, {self.quarantined} quarantined)")
        lag_text = "n/a" if self.lag is None else str(self.lag)
        return (f"{self.topic} batch {self.batch_id}: {self.input_rows} rows{split} in "
                f"{self.duration_s:.2f} s, {self.rows_per_second:.0f} rows/s, lag {lag_text}")


def batch_report(progress: Mapping[str, Any], topic: str,
                 counts: tuple[int, int] | None = None) -> BatchReport:
    """A :class:`BatchReport` from one Spark progress dict (``json.loads(progress.json)``)."""
    sources = progress.get("sources") or []
    lag_value: int | None = None
    for source in sources:
        end = topic_offsets(source.get("endOffset"), topic)
        latest = topic_offsets(source.get("latestOffset"), topic)
        if latest:
            lag_value = (lag_value or 0) + lag(end, latest)
    duration = (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000.0
    input_rows = int(progress.get("numInputRows", 0))
    rate = float(progress.get("processedRowsPerSecond") or 0.0)
    if counts:
        # Spark counts every read of the source: a batch whose quarantine re-reads the same
        # offsets reports its records twice, so the records are the rows written + quarantined
        records = counts[0] + counts[1]
        if input_rows and records != input_rows:
            rate = rate * records / input_rows
        input_rows = records
    return BatchReport(
        topic=topic, batch_id=int(progress.get("batchId", -1)), input_rows=input_rows,
        written=counts[0] if counts else None, quarantined=counts[1] if counts else None,
        rows_per_second=rate, duration_s=duration, lag=lag_value)


class BatchLedger:
    """Rows written and quarantined per (topic, batch), filled from the ``foreachBatch`` threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], tuple[int, int]] = {}

    def record(self, topic: str, batch_id: int, written: int, quarantined: int) -> None:
        with self._lock:
            self._counts[(topic, batch_id)] = (written, quarantined)

    def get(self, topic: str, batch_id: int) -> tuple[int, int] | None:
        with self._lock:
            return self._counts.get((topic, batch_id))

    def totals(self, topic: str) -> tuple[int, int, int]:
        """(rows written, rows quarantined, batches that had rows) of ``topic`` so far."""
        with self._lock:
            rows = [c for (t, _), c in self._counts.items() if t == topic and c[0] + c[1]]
        return sum(c[0] for c in rows), sum(c[1] for c in rows), len(rows)


class ProgressTracker:
    """Logs one line per finished micro-batch and remembers each topic's latest lag.

    Fed by a ``StreamingQueryListener`` (:meth:`listener`: Spark pushes one
    progress event per trigger, no polling), plus one :meth:`sweep` per query
    when it ends, so no batch is missed. Thread-safe; each batch is reported once.
    """

    def __init__(self, ledger: BatchLedger) -> None:
        self.ledger = ledger
        self.reports: dict[str, list[BatchReport]] = {}
        self.latest_lag: dict[str, int] = {}
        self._seen: dict[str, set[int]] = {}
        self._topics: dict[str, str] = {}  # query id -> topic
        self._lock = threading.Lock()

    def watch(self, query_id: str, topic: str) -> None:
        """Attribute the progress events of query ``query_id`` to ``topic``."""
        with self._lock:
            self._topics[str(query_id)] = topic

    def listener(self) -> Any:
        """A ``StreamingQueryListener`` that feeds this tracker (``spark.streams.addListener``)."""
        from pyspark.sql.streaming.listener import StreamingQueryListener

        tracker = self

        class _ProgressListener(StreamingQueryListener):
            def onQueryStarted(self, event: Any) -> None:
                pass

            def onQueryProgress(self, event: Any) -> None:
                try:
                    progress = json.loads(event.progress.json)
                    topic = tracker._topics.get(str(progress.get("id")))
                    if topic is not None:
                        tracker.feed(topic, [progress])
                except Exception as exc:  # noqa: BLE001 - a log line is not worth failing the query for
                    log.warning("Could not read a streaming progress event: {}", exc)

            def onQueryIdle(self, event: Any) -> None:
                pass

            def onQueryTerminated(self, event: Any) -> None:
                pass

        return _ProgressListener()

    def sweep(self, topic: str, query: Any) -> list[BatchReport]:
        """Report what ``query.recentProgress`` holds and was not reported yet (Spark keeps the last 100)."""
        jquery = getattr(query, "_jsq", None)
        if jquery is not None:  # one py4j call per progress instead of pyspark's field-by-field copy
            progresses = [json.loads(p.json()) for p in jquery.recentProgress()]
        else:
            progresses = [json.loads(p.json) if hasattr(p, "json") else dict(p) for p in query.recentProgress]
        return self.feed(topic, progresses)

    def feed(self, topic: str, progresses: Iterable[Mapping[str, Any]]) -> list[BatchReport]:
        """Report the batches of ``progresses`` (progress dicts) not reported yet; each is logged."""
        new = []
        with self._lock:
            seen = self._seen.setdefault(topic, set())
            for progress in progresses:
                report = batch_report(progress, topic)
                if report.lag is not None:
                    self.latest_lag[topic] = report.lag
                if report.input_rows == 0 or report.batch_id in seen:
                    continue  # an idle trigger, or a batch already reported
                seen.add(report.batch_id)
                report = batch_report(progress, topic, self.ledger.get(topic, report.batch_id))
                self.reports.setdefault(topic, []).append(report)
                new.append(report)
        for report in new:
            log.info(report.line())
        return new


# ----------------------------------------------------------------------------- summary
@dataclass
class TopicSummary:
    """What a run did for one topic."""

    topic: str
    rows_written: int = 0
    rows_quarantined: int = 0
    batches: int = 0
    lag: int | None = None
    output_path: Path | None = None
    quarantine_path: Path | None = None

    @property
    def input_rows(self) -> int:
        return self.rows_written + self.rows_quarantined


@dataclass
class ConsumerSummary:
    """What :meth:`ConsumerSparkABC.run` did: per-topic counts, lag, elapsed time and throughput."""

    consumer: str
    mode: str
    elapsed_s: float
    topics: dict[str, TopicSummary] = field(default_factory=dict)
    stopped: bool = False  # stopped by stop()/a signal/timeout before it was done
    #: rows written per route table (a consumer that declares ``routes``; empty otherwise)
    tables: dict[str, int] = field(default_factory=dict)

    @property
    def rows_written(self) -> int:
        return sum(t.rows_written for t in self.topics.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(t.rows_quarantined for t in self.topics.values())

    @property
    def rows_per_second(self) -> float:
        """Records processed (written + quarantined) per second of the run."""
        total = self.rows_written + self.rows_quarantined
        return total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def text(self) -> str:
        """The summary as printed by ``consume_cmd.py``."""
        how = "stopped" if self.stopped else "finished"
        lines = [f"consumer {self.consumer} ({self.mode}) {how} after {self.elapsed_s:.1f} s: "
                 f"{self.rows_written} rows written, {self.rows_quarantined} quarantined, "
                 f"{self.rows_per_second:.0f} rows/s"]
        for t in self.topics.values():
            lag_text = "unknown" if t.lag is None else str(t.lag)
            lines.append(f"  {t.topic}: {t.rows_written} rows written, {t.rows_quarantined} quarantined, "
                         f"{t.batches} batches, lag {lag_text}")
            if t.output_path:
                lines.append(f"    table:      {t.output_path}")
            if t.quarantine_path:
                lines.append(f"    quarantine: {t.quarantine_path}")
        return "\n".join(lines)

