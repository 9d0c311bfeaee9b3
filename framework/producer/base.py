"""ProducerABC: stream an NDJSON HTTP endpoint into a Kafka topic, exactly once across restarts.

A subclass declares four facts (and may override one hook, ``transform``); its
class body is checked when it runs (:class:`~framework.errors.DeclarationError`
names the class and the attribute) and it registers itself in :data:`PRODUCERS`
under its ``name``, where ``python cmd/produce_cmd.py NAME`` finds it. The base
class owns the whole lifecycle; see :class:`ProducerABC` for the guarantees.
"""
from __future__ import annotations

import gc
import inspect
import re
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Mapping

import orjson

from framework.errors import DeclarationError, ProducerError
from framework.records import RecordError, parse_record
from framework.sources.http import NdjsonStream
from framework.log import get_logger
from framework.producer.partitioning import Partitioner
from framework.producer.summary import ProduceSummary
from framework.producer.clients import KafkaFailure, ProducerClients
from framework.producer.protocols import (AdminLike, ConsumerFactory, HttpSessionLike, KafkaProducerLike,
                                          ProducerFactory)
from framework.registry import Registry
from framework.producer.resume import POSITION_HEADER, WATERMARK_HEADER, ResumeState, read_resume_state
from framework.settings import Settings
from framework.topics import MAX_TOPIC_NAME_LENGTH, topic_name_problem

__all__ = ["PRODUCERS", "ProducerABC", "ProduceSummary", "frozen_heap"]

PRODUCERS: Registry["ProducerABC"] = Registry("producer", "pipeline.producers")

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_FINAL = ("run", "stop", "dlq_topic", "url")
DLQ_SUFFIX = ".dlq"
DLQ_PARTITIONS = 1
DLQ_WARNINGS = 20
DLQ_PREFIX_BYTES = 4096  # bytes of a record kept in the dead-letter topic when the whole record does not fit
RECORD_OVERHEAD = 256  # bytes a record takes in a batch besides its key and value (batch header, headers)
_DONE, _SENT, _DEAD = 0, 1, 2  # kinds of tracked positions: skipped or dropped, sent, dead-lettered


class ProducerABC:
    """Base class of every producer. A minimal working subclass::

        class MetricsProducer(ProducerABC):
            name = "metrics"                    # registry name: `python cmd/produce_cmd.py metrics`
            endpoint = "/stream_data_metrics"   # a path on PIPELINE_API_BASE_URL, or a full http(s) URL
            topic = "metrics"
            key_field = "id"                    # optional: key = str(record["id"]).encode()
            partitions = 3                      # optional: partition count when the topic is created

            def transform(self, record: dict) -> dict | None:   # optional; None drops the record
                return record

        summary = MetricsProducer(Settings.from_env()).run()    # blocks until the end of the stream

    Lifecycle of :meth:`run` (the subclass never calls any of it):

    1. ensure ``topic`` and ``<topic>.dlq`` exist (``partitions`` or ``PIPELINE_TOPIC_PARTITIONS``;
       the dead-letter topic gets 1 partition);
    2. read where the previous run stopped from the last record of every partition
       (:mod:`framework.producer.resume`) and request the stream ``from`` there, checking the
       position the server states for its first line, and skipping on the client side what a
       server that ignores ``from`` sends again (:mod:`framework.sources.http`);
    3. for each line (``_position`` cut out, :mod:`framework.records`): check it is a valid record
       (one JSON object), call :meth:`transform` if the subclass overrides it, choose the partition
       (:mod:`framework.producer.partitioning`), skip it if that partition already holds it, else
       send it (acks=all, idempotent) with headers ``source-position`` and ``source-watermark``.
       Without a ``transform`` override the record's own bytes are sent, never re-encoded, so every
       number arrives exactly as the source wrote it. A bad line, and a record over the size
       Kafka takes, go to the dead-letter topic with ``dlq-reason`` (docs/producers-contract.md);
    4. at the end of the stream (or on :meth:`stop`): flush, check that every send was
       acknowledged, close, and return a :class:`ProduceSummary`.

    **Exactly once across restarts, even after SIGKILL.** Every source record is in ``topic``
    (or ``<topic>.dlq``) exactly once after any sequence of runs, kills and restarts, provided
    the stream's order and content are stable, :meth:`transform` is deterministic, the
    partition count does not change and nobody else writes to the topics. The mechanism and
    its proof: ``docs/exactly-once.md``.

    **Failures.** A broken HTTP stream is reconnected from the next position
    (:class:`~framework.sources.http.NdjsonStream`); a failed or refused send restarts the
    session from Kafka's state. Both use ``PIPELINE_PRODUCER_RETRIES`` attempts with
    exponential backoff from ``PIPELINE_PRODUCER_RETRY_BACKOFF`` seconds, each logged, then
    raise :class:`~framework.errors.StreamError` / :class:`~framework.errors.ProducerError`.
    A send is never dropped silently: the run ends with a flush and a check of every future.

    **Clients.** ``PIPELINE_PRODUCER_CLIENT`` chooses kafka-python (default) or librdkafka
    (``confluent``, :mod:`framework.producer.confluent`), with the same guarantees;
    ``producer_config=`` overrides that client's settings (kafka-python argument names, or
    librdkafka property names). Nothing connects in ``__init__``. Pass ``producer=`` (a KafkaProducer-like
    object, reused and not closed), ``producer_factory=``, ``session=`` (requests-like),
    ``admin=`` (:class:`~framework.admin.KafkaAdmin`-like) and ``consumer_factory=`` to test
    without a broker (:mod:`framework.testing.producer` has fakes). :meth:`stop` may be called
    from any thread or a signal handler. While :meth:`run` runs, the objects alive at its start
    are frozen for the garbage collector (:func:`frozen_heap`).
    """

    abstract: ClassVar[bool] = True
    name: ClassVar[str]
    endpoint: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str | None] = None
    partitions: ClassVar[int | None] = None

    # run state, reset by each run
    first_position: int | None
    last_position: int | None
    _failure: str | None
    _next_progress: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False) or inspect.isabstract(cls):
            return
        cls._check_declaration()
        PRODUCERS.register(cls.name, cls)

    @classmethod
    def _check_declaration(cls) -> None:
        """Check a concrete subclass's class attributes (:class:`DeclarationError`); a family base may extend it."""
        _validate(cls)

    @classmethod
    def source_description(cls) -> str:
        """Where the records come from, for ``produce --list``."""
        return cls.endpoint

    def transform(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Return the record to send (possibly changed), or None to drop it. Must be deterministic."""
        return record

    # ------------------------------------------------------------- construction
    def __init__(self, settings: Settings | None = None, *, producer: KafkaProducerLike | None = None,
                 producer_factory: ProducerFactory | None = None, session: HttpSessionLike | None = None,
                 admin: AdminLike | None = None, consumer_factory: ConsumerFactory | None = None,
                 follow: bool = False, delay: float | None = None, progress_interval: float = 5.0,
                 poll_interval: float = 1.0, flush_timeout: float = 120.0,
                 producer_config: Mapping[str, Any] | None = None) -> None:
        """Configure the producer; nothing connects here (see "Clients" in the class docstring).

        :param settings: the :class:`~framework.settings.Settings` (default: ``Settings.from_env()``,
            the ``PIPELINE_*`` environment variables).
        :param follow: at the end of the stream, keep asking for new records every
            ``poll_interval`` seconds until :meth:`stop` (default False: :meth:`run` returns at the end).
        :param delay: seconds between records the API is asked to wait (its ``delay`` query
            parameter); None leaves the API's own default, 0 asks for no pacing.
        :param progress_interval: seconds between two progress log lines while running (default 5).
        :param poll_interval: seconds between two requests for new records with ``follow`` (default 1).
        :param flush_timeout: seconds the final flush may wait for every acknowledgement
            before the session fails and restarts from Kafka's state (default 120).
        :param producer_config: settings of the chosen Kafka client, merged over the
            framework's (kafka-python argument names such as ``linger_ms``, or librdkafka
            property names such as ``linger.ms`` with ``PIPELINE_PRODUCER_CLIENT=confluent``).
        :param producer: a ready Kafka producer (:class:`~framework.producer.protocols.KafkaProducerLike`),
            used as given and never closed here; or ``producer_factory``, called for each new session.
        :param session: the HTTP session (:class:`~framework.producer.protocols.HttpSessionLike`,
            default a new ``requests.Session``).
        :param admin: the topic admin (:class:`~framework.producer.protocols.AdminLike`,
            default :class:`~framework.admin.KafkaAdmin`).
        :param consumer_factory: builds the Kafka consumer that reads where the last run stopped
            (:class:`~framework.producer.protocols.KafkaConsumerLike`).
        :raises ~framework.errors.ProducerError: ``PIPELINE_PRODUCER_CLIENT`` names no known client.
        """
        self.settings = settings or Settings.from_env()
        self.follow = follow
        self.delay = delay
        self.progress_interval = progress_interval
        self.poll_interval = poll_interval
        self.flush_timeout = flush_timeout
        self._clients = ProducerClients(self.settings, self.name, producer=producer,
                                        producer_factory=producer_factory, session=session, admin=admin,
                                        consumer_factory=consumer_factory, producer_config=producer_config,
                                        client=self.settings.producer_client)
        self._stop = threading.Event()
        self._passthrough = type(self).transform is ProducerABC.transform  # send the source's bytes
        self._stream: NdjsonStream | None = None
        self.summary: ProduceSummary | None = None
        self.log = get_logger(f"producer:{self.name}")
        self._reset_counts()

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic: ``<topic>.dlq``."""
        return f"{self.topic}{DLQ_SUFFIX}"

    @property
    def url(self) -> str:
        """The full URL of ``endpoint`` (a path is resolved against ``settings.api_url``)."""
        if self.endpoint.startswith(("http://", "https://")):
            return self.endpoint
        return self.settings.api_url + self.endpoint

    def stop(self) -> None:
        """Ask :meth:`run` to stop reading; it then flushes, closes and returns. Thread-safe."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.abort()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------- lifecycle
    def run(self) -> ProduceSummary:
        """Stream until the end (or forever with ``follow``, until :meth:`stop`); see the class contract."""
        from framework.sources import model_process

        if model_process.IN_MODEL_PROCESS:  # a model's module started a producer when the model process imported it
            raise ProducerError(f"{type(self).__name__}.run() was called while a simulation's model process imported "
                                "the model's module; start producers under `if __name__ == \"__main__\":`, not at "
                                "import time.")
        with frozen_heap():
            return self._run()

    def _run(self) -> ProduceSummary:
        self._reset_counts()
        self._started = time.monotonic()
        failures, error = 0, None
        try:
            self._ensure_topics()
            best = -1  # the furthest acknowledged position at a failure: progress resets the count
            while not self._stop.is_set():
                try:
                    self._session_run()
                    break
                except KafkaFailure as exc:
                    self._clients.discard_producer()
                    failures = 1 if self._acked_through > best else failures + 1
                    best = max(best, self._acked_through)
                    if failures > self.settings.producer_retries:
                        raise ProducerError(
                            f"Producing to topic {self.topic!r} at {self.settings.bootstrap_servers} failed "
                            f"{failures} times in a row (last: {exc}); a restart resumes without loss.") from None
                    wait = self.settings.producer_retry_backoff * 2 ** (failures - 1)
                    self.log.warning("Kafka failed ({}); restarting from Kafka's state in {:.1f}s (attempt {}/{})",
                                     exc, wait, failures, self.settings.producer_retries)
                    self.retries += 1
                    self._stop.wait(wait)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._clients.close()
            self.summary = self._summary()
            self.log.log(("WARNING" if isinstance(error, KeyboardInterrupt) else "ERROR") if error else "INFO", "{}{}",
                         self.summary.line(),
                         f" (ended by {type(error).__name__})" if error else "")
        return self.summary

    def _session_run(self) -> None:
        """One producer session: read Kafka's state, stream from there, flush and check."""
        self._failure = None
        self._state = self._read_state()
        start = self._state.start_position
        self.log.info("Resuming {} at position {} (high-water per partition: {}; acknowledged up to {})",
                      self.topic, start, _describe(self._state), self._state.watermark)
        self._pending: deque[tuple[int, Any, int]] = deque()
        self._acked_through = start - 1
        producer = self._clients.producer()
        params = {} if self.delay is None else {"delay": self.delay}
        stream = NdjsonStream(self._clients.session(), self.url, params=params, retries=self.settings.producer_retries,
                              backoff=self.settings.producer_retry_backoff, follow=self.follow,
                              poll_interval=self.poll_interval, stop=self._stop)
        self._stream = stream
        try:
            for position, line in stream.lines(start, catch_up_to=self._state.highest):
                if self._failure is not None:
                    raise KafkaFailure(self._failure)
                self._handle(producer, position, line)
                if time.monotonic() >= self._next_progress:
                    self._log_progress()
        finally:
            self._stream = None
            self.reconnects += stream.reconnects
            self._flush_and_check(producer)

    # ------------------------------------------------------------- one record
    def _handle(self, producer: Any, position: int, line: bytes) -> None:
        if self.first_position is None:
            self.first_position = position
        self.last_position = position
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if type(record) is not dict:  # the contract decides (numbers beyond a double, the reason)
            try:
                record = parse_record(line)
            except RecordError as exc:
                return self._dead_letter(producer, position, line, str(exc))
        out: dict[str, Any]
        if self._passthrough:
            out = record
        else:
            record.pop("_position", None)
            try:
                result: object = self.transform(record)  # a subclass may break its signature: checked below
            except Exception as exc:  # noqa: BLE001 - a bad record must not stop the stream
                return self._dead_letter(producer, position, line, f"transform() raised {type(exc).__name__}: {exc}")
            if result is None:
                self.dropped += 1
                return self._track(position)
            if not isinstance(result, dict):
                return self._dead_letter(producer, position, line,
                                         f"transform() returned a {type(result).__name__}, not a dict or None")
            out = result
        key = None
        if self.key_field is not None:
            value = out.get(self.key_field)
            if value is None:
                return self._dead_letter(producer, position, line,
                                         f"the record has no {self.key_field!r} field, the key of topic {self.topic!r}")
            key = str(value).encode()
        partition = self._partitioner(key, position)
        if self._state.already_written((self.topic, partition), position):
            self.skipped_existing += 1
            return self._track(position)
        if self._passthrough:
            payload = line.strip(b" \t\r\n")
        else:
            try:
                payload = orjson.dumps(out)
            except TypeError as exc:
                return self._dead_letter(producer, position, line, f"the record cannot be written as JSON ({exc})")
        size = len(payload) + len(key or b"") + RECORD_OVERHEAD
        refused = self._oversized.get(position)
        if refused is None and size > self._max_record_bytes:
            refused = (f"the record is {len(payload)} bytes, over the {self._max_record_bytes - RECORD_OVERHEAD} "
                       f"bytes topic {self.topic!r} and the producer take (max.message.bytes / max request size)")
        if refused is None:
            try:
                return self._send(producer, self.topic, partition, key, payload, position, [], _SENT)
            except _Oversized as exc:
                refused = f"Kafka refused the record as too large ({exc}); it is {len(payload)} bytes"
        self._dead_letter(producer, position, line, refused, key)

    def _dead_letter(self, producer: Any, position: int, line: bytes, reason: str, key: bytes | None = None) -> None:
        """Send ``line`` (or its first DLQ_PREFIX_BYTES when it does not fit) to ``<topic>.dlq``, with the reason."""
        partition = position % self._dlq_partitions
        if self._state.already_written((self.dlq_topic, partition), position):
            self.skipped_existing += 1
            return self._track(position)
        headers = [("dlq-reason", reason.encode()), ("source-topic", self.topic.encode())]
        if key is not None:
            headers.append(("source-key", key))
        room = self._max_dlq_bytes - len(key or b"") - len(reason) - RECORD_OVERHEAD
        if len(line) > room:
            headers += [("dlq-value-bytes", b"%d" % len(line)), ("dlq-truncated", b"true")]
            line = line[:max(0, min(DLQ_PREFIX_BYTES, room))]
        self._send(producer, self.dlq_topic, partition, key, line, position, headers, _DEAD)
        self._bad_lines += 1
        if self._bad_lines <= DLQ_WARNINGS:
            self.log.warning("Position {}: {}; sent to {}{}", position, reason, self.dlq_topic,
                             " (further bad records are logged at DEBUG)" if self._bad_lines == DLQ_WARNINGS else "")
        else:
            self.log.debug("Position {}: {}; sent to {}", position, reason, self.dlq_topic)

    def _send(self, producer: Any, topic: str, partition: int, key: bytes | None, value: bytes, position: int,
              headers: list[tuple[str, bytes]], kind: int) -> None:
        headers.append((POSITION_HEADER, b"%d" % position))
        headers.append((WATERMARK_HEADER, b"%d" % self._acked_through))
        try:
            future = producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        except Exception as exc:  # noqa: BLE001 - KafkaTimeoutError, closed producer, ...: restart the session
            if kind == _SENT and _too_large(exc):  # refused before sending: nothing queued, no gap
                raise _Oversized(f"{type(exc).__name__}: {exc}") from None
            raise KafkaFailure(f"send to {topic}[{partition}] raised {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_delivery_error, topic, partition, position)
        self._track(position, future, kind)

    def _track(self, position: int, future: Any = None, kind: int = _DONE) -> None:
        """Remember a position (with its send's future, if any) and advance over completed ones.

        Called for every record: :meth:`_advance` runs only when the oldest position is complete.
        """
        pending = self._pending
        pending.append((position, future, kind))
        head = pending[0][1]
        if head is None or head.is_done:
            self._advance(final=False)

    def _advance(self, final: bool) -> None:
        """Pop completed positions in order: count them, move the acknowledged watermark.

        A failed delivery raises :class:`KafkaFailure`; so does an incomplete one when ``final``.
        """
        pending = self._pending
        while pending:
            position, future, kind = pending[0]
            if future is not None:
                if not future.is_done:
                    if not final:
                        return
                    raise KafkaFailure(self._failure or f"position {position} was not acknowledged "
                                                        f"within {self.flush_timeout:.0f}s")
                if future.exception is not None:
                    raise KafkaFailure(self._failure or f"delivery of position {position} failed")
                if kind == _SENT:
                    self.sent += 1
                else:
                    self.dead_lettered += 1
            pending.popleft()
            self._acked_through = position

    def _on_delivery_error(self, topic: str, partition: int, position: int, exc: BaseException) -> None:
        """Called in the client's I/O thread. Halts the client so nothing after the failed batch is written."""
        if self._failure is None:
            self._failure = (f"delivery of position {position} to {topic}[{partition}] failed: "
                             f"{type(exc).__name__}: {exc}")
            self._clients.halt()
            if topic == self.topic and _too_large(exc):  # the next session dead-letters it instead
                self._oversized[position] = f"Kafka refused the record as too large ({type(exc).__name__}: {exc})"

    def _flush_and_check(self, producer: Any) -> None:
        """Flush, then require every outstanding send to be acknowledged."""
        try:
            producer.flush(timeout=self.flush_timeout)
        except Exception as exc:  # noqa: BLE001
            raise KafkaFailure(self._failure or f"flush raised {type(exc).__name__}: {exc}") from None
        self._advance(final=True)
        if self._failure is not None:
            raise KafkaFailure(self._failure)

    # ------------------------------------------------------------- clients
    def _ensure_topics(self) -> None:
        counts = self._clients.ensure_topics(self.topic, self.partitions, {self.dlq_topic: DLQ_PARTITIONS},
                                             owner=type(self).__name__)
        self._partitioner = Partitioner(counts[self.topic])
        self._dlq_partitions = counts[self.dlq_topic]
        self._destinations = counts
        self._max_record_bytes = self._clients.max_record_bytes(self.topic)
        self._max_dlq_bytes = self._clients.max_record_bytes(self.dlq_topic)

    def _read_state(self) -> ResumeState:
        from kafka.errors import KafkaError

        try:
            return read_resume_state(self._clients.consumer_factory, self._destinations)
        except (KafkaError, OSError) as exc:
            raise KafkaFailure(f"reading the end of {self.topic} raised {type(exc).__name__}: {exc}") from None

    # ------------------------------------------------------------- reporting
    def _reset_counts(self) -> None:
        self.sent = self.skipped_existing = self.dead_lettered = self.dropped = 0
        self.retries = self.reconnects = self._bad_lines = 0
        self._acked_through = -1
        self._failure = None
        self._oversized: dict[int, str] = {}  # positions Kafka refused as too large in this run: the reason
        self.first_position = None
        self.last_position = None
        self._started = self._last_progress_at = time.monotonic()
        self._last_progress_sent = 0
        self._next_progress = self._started + self.progress_interval

    def _log_progress(self) -> None:
        now = time.monotonic()
        rate = (self.sent - self._last_progress_sent) / max(now - self._last_progress_at, 1e-9)
        self.log.info("{} sent to {} ({:.0f} records/s), last position {}, {} skipped as already written, "
                      "{} dead-lettered, {} dropped", self.sent, self.topic, rate, self.last_position,
                      self.skipped_existing, self.dead_lettered, self.dropped)
        self._last_progress_at, self._last_progress_sent = now, self.sent
        self._next_progress = now + self.progress_interval

    def _summary(self) -> ProduceSummary:
        return ProduceSummary(name=self.name, topic=self.topic, sent=self.sent,
                              skipped_existing=self.skipped_existing, dead_lettered=self.dead_lettered,
                              dropped=self.dropped, first_position=self.first_position,
                              last_position=self.last_position, elapsed=time.monotonic() - self._started,
                              reconnects=self.reconnects, retries=self.retries, stopped=self._stop.is_set())


_frozen = threading.Lock()
_freezers = 0  # runs inside frozen_heap() now


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects alive before a producer runs (``gc.freeze``).

    A producer allocates a few short-lived objects per record (its send's future,
    headers) that outlive the young generations while Kafka acknowledges them, so
    CPython's full collections come every few thousand records, and each walks
    every object alive in the process (the imported modules of pandas, cadCAD,
    pyspark: about 10^5). Frozen, those are skipped:
    measured with the chat simulation, 86k -> 100k records/s. Python's docs,
    ``gc.freeze``: "move them to a permanent generation and ignore them in all the
    future collections". The last run to end unfreezes; a process that froze its
    heap itself (``gc.get_freeze_count() > 0``) or disabled the collector is left as it is.
    """
    global _freezers
    with _frozen:
        owner = _freezers > 0 or (gc.isenabled() and gc.get_freeze_count() == 0)
        if owner:
            if _freezers == 0:
                gc.freeze()  # no gc.collect() first (tens of ms with pandas loaded): unfrozen at the end
            _freezers += 1
    try:
        yield
    finally:
        if owner:
            with _frozen:
                _freezers -= 1
                if _freezers == 0:
                    gc.unfreeze()


def _validate(cls: type[Any]) -> None:
    """Check a concrete subclass's declaration; :class:`DeclarationError` names class and attribute."""
    where = cls.__name__

    def fail(attr: str, problem: str, example: str) -> None:
        raise DeclarationError(f"{where}.{attr} {problem}; declare it like `{attr} = {example}`.")

    for attr, example in (("name", '"metrics"'), ("endpoint", '"/stream_data_metrics"'), ("topic", '"metrics"')):
        value = getattr(cls, attr, None)
        if value is None:
            fail(attr, "is missing", example)
        if not isinstance(value, str) or not value:
            fail(attr, f"must be a non-empty string, not {value!r}", example)
    if not _NAME.match(cls.name):
        fail("name", f"({cls.name!r}) may only hold letters, digits, '.', '_' and '-'", '"metrics"')
    if not (cls.endpoint.startswith("/") or cls.endpoint.startswith(("http://", "https://"))):
        fail("endpoint", f"({cls.endpoint!r}) must be a path starting with '/' or an http(s) URL",
             '"/stream_data_metrics"')
    problem = topic_name_problem(cls.topic)
    longest = MAX_TOPIC_NAME_LENGTH - len(DLQ_SUFFIX)  # the dead-letter topic `<topic>.dlq` must be legal too
    if problem is None and len(cls.topic) > longest:
        problem = (f"has {len(cls.topic)} characters, more than {longest} (its dead-letter topic "
                   f"'<topic>{DLQ_SUFFIX}' must fit in Kafka's {MAX_TOPIC_NAME_LENGTH})")
    if problem is not None:
        fail("topic", f"({cls.topic!r}) is not a valid Kafka topic name: it {problem}", '"metrics"')
    if cls.key_field is not None and (not isinstance(cls.key_field, str) or not cls.key_field):
        fail("key_field", f"must be a field name (a non-empty string) or None, not {cls.key_field!r}", '"id"')
    if cls.partitions is not None and (isinstance(cls.partitions, bool) or not isinstance(cls.partitions, int)
                                       or cls.partitions < 1):
        fail("partitions", f"must be a whole number of at least 1 or None, not {cls.partitions!r}", "3")
    if not callable(getattr(cls, "transform", None)):
        fail("transform", "must be a method `def transform(self, record: dict) -> dict | None`",
             "<a method>")
    for attr in _FINAL:
        if attr in cls.__dict__:
            raise DeclarationError(f"{where} overrides {attr}; a producer may override transform() only, the "
                                   "base class owns the lifecycle.")


class _Oversized(Exception):
    """The client refused a record as larger than it or the broker takes (nothing was queued)."""


def _too_large(exc: BaseException) -> bool:
    """True for kafka-python's MessageSizeTooLargeError and librdkafka's MSG_SIZE_TOO_LARGE.

    librdkafka's message is "Message size too large".
    """
    text = str(exc)
    return ("MessageSizeTooLarge" in type(exc).__name__ or "TOO_LARGE" in text
            or "message size too large" in text.lower())


def _describe(state: ResumeState) -> str:
    return ", ".join(f"{t}[{p}]={v}" for (t, p), v in sorted(state.high_water.items())) or "none"

