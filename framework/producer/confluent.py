"""ConfluentProducer: librdkafka (``confluent-kafka``) behind the producer interface ProducerABC uses.

:class:`~framework.producer.base.ProducerABC` produces with kafka-python by default;
with ``PIPELINE_PRODUCER_CLIENT=confluent``,
:class:`~framework.producer.clients.ProducerClients` builds this adapter instead:
``confluent_kafka.Producer`` behind the part of kafka-python's ``KafkaProducer``
that ProducerABC needs (``send`` returning a future with ``add_callback`` /
``add_errback`` / ``is_done`` / ``exception``, ``flush``, ``close``), plus
:meth:`ConfluentProducer.halt`. librdkafka sends two to three times more records
per second than kafka-python, whose ``send()`` is most of the producer's cost.

Minimal use::

    producer = ConfluentProducer(settings, client_id="pipeline-producer-metrics")  # no network yet
    producer.wait_for_brokers(30.0)           # one metadata request; KafkaException if no broker answers
    future = producer.send("metrics", value=b'{"id":7}', key=b"7", partition=1, headers=[("h", b"v")])
    future.add_errback(lambda exc: print("not delivered:", exc))
    producer.flush(timeout=60)                # serves the delivery reports; raises if some are missing
    producer.close(timeout=10)

Contract:

- **Configuration.** ``acks=all``, ``enable.idempotence=true``,
  ``enable.gapless.guarantee=true``, ``message.timeout.ms=0`` (a record never
  times out locally), ``allow.auto.create.topics=false``, ``batch.size`` /
  ``linger.ms`` / ``compression.type`` from ``PIPELINE_PRODUCER_*``. ``config``
  (librdkafka property names, e.g. ``{"linger.ms": 5}``; ProducerABC's
  ``producer_config=``) is applied last. Overriding ``acks``,
  ``enable.idempotence``, ``enable.gapless.guarantee`` or ``message.timeout.ms``
  would give up the no-gap guarantee below, so ProducerABC refuses it
  (:mod:`framework.producer.config`).
- **No gap.** Idempotence keeps each partition in send order without duplicates,
  and the broker refuses a batch that does not follow the last one it wrote from
  this producer. A failed batch that could leave a gap (a permanent error such as
  a record above the topic's ``max.message.bytes``) becomes a fatal error that
  stops librdkafka (the gapless guarantee). The failure that guarantee does not
  cover, a local timeout, is switched off: the caller's :meth:`flush` timeout
  bounds the wait instead, and :meth:`halt` purges what is left. One more case:
  the broker accepts any sequence number from a producer it does not know yet on
  a partition, so were the *first* batch refused while the second is on its way,
  the second would be written after a gap. Hence the second record for each
  destination (topic, partition) is only queued once the first one is
  acknowledged (one round trip per destination and instance; ``send`` needs an
  explicit ``partition`` for this, as ProducerABC always gives).
- **Threads.** Delivery reports, hence the futures' callbacks and errbacks, run
  on the calling thread, inside :meth:`send` (every ``poll_every`` sends or
  ``poll_interval`` seconds), :meth:`flush`, :meth:`halt` and :meth:`close`;
  never in another thread (kafka-python runs them in its I/O thread). Use one
  instance from one thread; never call :meth:`close` from a callback.
- **Failures.** Every future completes: acknowledged, or failed with
  :class:`ConfluentDeliveryError`. The first failed delivery halts the client:
  queued and in-flight records are purged, every outstanding future fails, and
  every later :meth:`send` raises :class:`ConfluentProducerError`, so nothing
  after a failure is sent (a record already on the wire may still be written).
  A record librdkafka refuses at once (larger than ``message.max.bytes``, an
  unknown partition, a fatal state) raises :class:`ConfluentProducerError`
  from :meth:`send`. While librdkafka's local queue is full, :meth:`send`
  serves delivery reports and retries, for ``max_block`` seconds at most, then
  raises ``kafka.errors.KafkaTimeoutError`` (like kafka-python's
  ``max_block_ms``). A fatal librdkafka error halts the client and raises
  :class:`ConfluentProducerError` from the call that met it, and from every
  later :meth:`flush`. :meth:`flush` raises :class:`ConfluentDeliveryError`
  when records are still unacknowledged at its timeout.
- :meth:`close` flushes, then purges whatever is left, so it never blocks on an
  unreachable broker; librdkafka's threads and connections are released.
- librdkafka's log lines go through loguru (component ``librdkafka``): its
  errors and warnings at WARNING (it retries by itself; a failure that matters
  reaches the futures), a fatal error at ERROR, the rest at DEBUG.
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping

from kafka.errors import KafkaTimeoutError

from framework.log import get_logger
from framework.settings import Settings

__all__ = ["ConfluentDeliveryError", "ConfluentProducer", "ConfluentProducerError", "DeliveryFuture",
           "confluent_available", "producer_config"]

_log = get_logger("librdkafka")
_AFTER_FATAL = "not acknowledged: librdkafka stopped with a fatal error"


class ConfluentProducerError(Exception):
    """librdkafka refused a record or stopped with a fatal error, or the client is halted or closed."""


class ConfluentDeliveryError(ConfluentProducerError):
    """A record that was not delivered (or not acknowledged in time)."""


def confluent_available() -> bool:
    """True when ``confluent_kafka`` (librdkafka) can be imported."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def producer_config(settings: Settings, client_id: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka properties of the framework's producer (see the module contract), ``overrides`` last."""
    s = settings
    config: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "acks": "all",
        "enable.idempotence": True,
        "enable.gapless.guarantee": True,
        "message.timeout.ms": 0,
        "allow.auto.create.topics": False,
        "batch.size": s.producer_batch_size,
        "linger.ms": s.producer_linger_ms,
        "compression.type": s.producer_compression,
    }
    if client_id:
        config["client.id"] = client_id
    config.update(overrides or {})
    return config


class DeliveryFuture:
    """The outcome of one :meth:`ConfluentProducer.send`: kafka-python's ``Future`` as ProducerABC uses it.

    ``is_done``, ``value`` (the ``confluent_kafka.Message`` once acknowledged),
    ``exception``; ``add_callback(f)`` calls ``f(value)`` and ``add_errback(f)``
    calls ``f(exception)`` when the delivery report arrives (at once if it has).
    An exception raised by a callback is logged and does not stop the others,
    as in kafka-python.
    """

    __slots__ = ("is_done", "value", "exception", "_callbacks", "_errbacks", "_owner")

    def __init__(self, owner: "ConfluentProducer | None" = None) -> None:
        self.is_done = False
        self.value: Any = None
        self.exception: BaseException | None = None
        self._callbacks: list[Callable[[Any], Any]] | None = None
        self._errbacks: list[Callable[[BaseException], Any]] | None = None
        self._owner = owner

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "DeliveryFuture":
        if args or kwargs:
            f = functools.partial(f, *args, **kwargs)
        if not self.is_done:
            if self._callbacks is None:
                self._callbacks = []
            self._callbacks.append(f)
        elif self.exception is None:
            _call(f, self.value)
        return self

    def add_errback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> "DeliveryFuture":
        if args or kwargs:
            f = functools.partial(f, *args, **kwargs)
        if not self.is_done:
            if self._errbacks is None:
                self._errbacks = [f]
            else:
                self._errbacks.append(f)
        elif self.exception is not None:
            _call(f, self.exception)
        return self

    def success(self, value: Any) -> "DeliveryFuture":
        if self.is_done:
            return self
        self.value, self.is_done = value, True
        callbacks, self._callbacks, self._errbacks = self._callbacks, None, None
        for f in callbacks or ():
            _call(f, value)
        return self

    def failure(self, exception: BaseException) -> "DeliveryFuture":
        if self.is_done:
            return self
        self.exception, self.is_done = exception, True
        errbacks, self._callbacks, self._errbacks = self._errbacks, None, None
        for f in errbacks or ():
            _call(f, exception)
        return self

    def _delivered(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report (``on_delivery``), served by poll()/flush() on the calling thread."""
        owner, self._owner = self._owner, None
        if err is None and not self.is_done:  # the common case: nothing to halt, the owner only forgets it
            self.success(msg)
            if owner is not None:
                owner._outstanding.discard(self)
            return
        try:
            if err is None:
                self.success(msg)
            else:  # errbacks first, so they learn the first cause; then the owner halts
                self.failure(ConfluentDeliveryError(_failure_text(err, owner)))
        except Exception:  # noqa: BLE001 - confluent-kafka serves the reports left after a fatal error
            fatal = owner._log.fatal if owner is not None else None  # with that error still set: fail, never hang
            self.failure(ConfluentDeliveryError(f"not acknowledged: {fatal}" if fatal else _AFTER_FATAL))
        if owner is not None:
            owner._settled(self)


class ConfluentProducer:
    """``confluent_kafka.Producer`` behind the kafka-python producer interface ProducerABC uses (module contract).

    ``config``: librdkafka properties applied over the framework's own.
    Building it does no network I/O; :meth:`wait_for_brokers` does.
    """

    def __init__(self, settings: Settings, config: Mapping[str, Any] | None = None, *, client_id: str | None = None,
                 poll_every: int = 1000, poll_interval: float = 0.1, max_block: float = 60.0) -> None:
        from confluent_kafka import KafkaException, Producer

        self._refusal = KafkaException  # what produce() raises when librdkafka refuses a record
        self.config = producer_config(settings, client_id, config)
        self._log = _LibrdkafkaLog()
        self._producer: Any = Producer({**self.config, "logger": self._log, "error_cb": _on_client_error})
        self._poll_every = max(1, poll_every)
        self._poll_interval = poll_interval
        self._max_block = max_block
        self._since_poll = 0
        self._next_poll = time.monotonic() + poll_interval
        self._halted: str | None = None  # why sends are refused (halted, broken or closed)
        self._broken: str | None = None  # a fatal error: every later flush raises it
        self._serving = False  # inside poll()/flush(), i.e. possibly inside a delivery report
        self._outstanding: set[DeliveryFuture] = set()  # sent, no delivery report yet
        self._first: dict[tuple[str, int], DeliveryFuture] = {}  # the first record sent to each destination
        self._confirmed: set[tuple[str, int]] = set()  # destinations whose first record was acknowledged

    # ------------------------------------------------------------- the KafkaProducer interface
    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> DeliveryFuture:
        """Queue one record; return its future. Serves delivery reports now and then (module contract)."""
        if self._halted is not None:
            raise ConfluentProducerError(f"The producer does not send any more: {self._halted}.")
        future = DeliveryFuture(self)
        part = -1 if partition is None else partition
        stamp = timestamp_ms or 0
        destination = (topic, part)
        first = destination not in self._confirmed
        if first and destination in self._first:  # a second record: only once the first one is acknowledged
            self._await_first(destination)
            first = False
        try:
            # positional (topic, value, key, partition, callback, on_delivery, timestamp, headers): confluent-kafka
            # parses keywords in about 0.7 us more per record (Producer.c's kws order, confluent-kafka 2.x)
            self._producer.produce(topic, value, key, part, future._delivered, None, stamp, headers)
        except BufferError:  # librdkafka's local queue is full: serve delivery reports and retry, bounded
            self._produce_when_room(topic, value, key, part, future, stamp, headers)
        except self._refusal as exc:
            raise self._refused(exc) from None
        self._outstanding.add(future)
        if first:
            self._first[destination] = future
        self._since_poll += 1
        if self._since_poll >= self._poll_every or time.monotonic() >= self._next_poll:
            self._since_poll = 0
            self._next_poll = time.monotonic() + self._poll_interval
            self._call(self._producer.poll, 0)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every acknowledgement (serving the delivery reports); raise if some are missing."""
        if self._producer is None:
            return
        remaining = self._call(self._producer.flush, -1 if timeout is None else timeout)
        if self._broken is not None:
            raise ConfluentProducerError(self._broken)
        if remaining:
            raise ConfluentDeliveryError(f"{remaining} records were not acknowledged within {timeout:g} s")
        if any(not f.is_done for f in self._outstanding):  # librdkafka holds nothing: their reports were lost
            self._fail_outstanding("no delivery report came")

    def close(self, timeout: float | None = None) -> None:
        """Flush (``timeout``), then purge what is left and release librdkafka's threads and connections.

        A halted client (nothing left to send) is not flushed, so this raises only
        for what the flush finds now, never again for the failure that halted it.
        """
        if self._producer is None:
            return
        try:
            if self._halted is None:
                self.flush(timeout)
        finally:
            self.halt("the producer is closed")
            producer, self._producer = self._producer, None
            close = getattr(producer, "close", None)  # newer confluent-kafka; older ones release it when dropped
            if close is not None:
                close()

    # ------------------------------------------------------------- additions
    def halt(self, reason: str = "the producer was halted") -> None:
        """Refuse later sends; purge queued and in-flight records; every outstanding future fails now.

        Safe from a delivery report's errback (inside poll/flush on this thread).
        Records already on the wire may still be written by the broker; none is
        sent after this call.
        """
        if self._halted is None:
            self._halted = reason
        producer = self._producer
        if producer is not None:
            try:
                producer.purge(in_queue=True, in_flight=True)
                if not self._serving:  # serve the purged records' reports (never from inside a report)
                    self._serving = True
                    try:
                        producer.poll(0)
                    finally:
                        self._serving = False
            except Exception as exc:  # noqa: BLE001 - a fatal error met while halting: stopping anyway
                _log.debug("librdkafka reported while halting: {}", exc)
        self._fail_outstanding(f"halted: {self._halted}")

    def wait_for_brokers(self, timeout: float) -> None:
        """One metadata request; raises ``confluent_kafka.KafkaException`` when no broker answers in ``timeout`` s."""
        self._producer.list_topics(timeout=timeout)

    @property
    def halted(self) -> bool:
        return self._halted is not None

    # ------------------------------------------------------------- internals
    def _call(self, serve: Callable[[float], int], timeout: float) -> int:
        """``poll``/``flush``: never nested (confluent-kafka aborts the process), a fatal error halts the client."""
        if self._serving:
            return len(self._producer)
        self._serving = True
        try:
            return serve(timeout)
        except Exception as exc:  # noqa: BLE001 - KafkaException (fatal), or what a report raised after one
            failure = exc
        finally:
            self._serving = False
        reason = self._log.fatal or f"librdkafka stopped: {_exception_text(failure)}"
        if self._broken is None:
            self._broken = reason
        self.halt(reason)
        raise ConfluentProducerError(reason)

    def _settled(self, future: DeliveryFuture) -> None:
        """After ``future``'s delivery report: forget it; the first failure halts the client."""
        self._outstanding.discard(future)
        if future.exception is not None and self._halted is None:
            self.halt(f"an earlier record was not delivered ({future.exception})")

    def _fail_outstanding(self, reason: str) -> None:
        futures, self._outstanding = self._outstanding, set()
        for future in futures:
            future._owner = None
            future.failure(ConfluentDeliveryError(f"not acknowledged ({reason})"))

    def _await_first(self, destination: tuple[str, int]) -> None:
        """Serve delivery reports until the first record sent to ``destination`` is acknowledged (module contract)."""
        future = self._first[destination]
        deadline = time.monotonic() + self._max_block
        while not future.is_done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KafkaTimeoutError(f"The first record sent to {destination[0]}[{destination[1]}] was not "
                                        f"acknowledged within {self._max_block:g} s; is the broker reachable?")
            self._call(self._producer.flush, min(left, 1.0))  # flush sends at once (no linger)
        if future.exception is not None:
            self.halt(f"the first record sent to {destination[0]}[{destination[1]}] was not delivered "
                      f"({future.exception})")
            raise ConfluentProducerError(f"The producer does not send any more: {self._halted}.")
        del self._first[destination]
        self._confirmed.add(destination)

    def _produce_when_room(self, topic: str, value: bytes | None, key: bytes | None, partition: int,
                           future: DeliveryFuture, timestamp: int, headers: list[tuple[str, bytes]] | None) -> None:
        deadline = time.monotonic() + self._max_block
        while True:
            self._call(self._producer.poll, 0.05)
            if self._halted is not None:
                raise ConfluentProducerError(f"The producer does not send any more: {self._halted}.")
            try:
                self._producer.produce(topic, value=value, key=key, partition=partition,
                                       on_delivery=future._delivered, timestamp=timestamp, headers=headers)
                return
            except BufferError:
                if time.monotonic() >= deadline:
                    raise KafkaTimeoutError(f"librdkafka's local queue stayed full for {self._max_block:g} s; "
                                            "the broker does not take records fast enough or is unreachable") from None
            except self._refusal as exc:
                raise self._refused(exc) from None

    def _refused(self, exc: Exception) -> ConfluentProducerError:
        err = exc.args[0] if exc.args else exc
        if getattr(err, "fatal", lambda: False)():
            reason = self._log.fatal or f"librdkafka stopped with a fatal error: {_describe(err)}"
            self._broken = self._broken or reason
            self.halt(reason)
        return ConfluentProducerError(f"librdkafka refused the record: {_describe(err)}")


def _purge_codes() -> tuple[int, ...]:
    try:
        from confluent_kafka import KafkaError
    except ImportError:
        return ()
    return (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)


_PURGED = _purge_codes()


def _describe(err: Any) -> str:
    """``NAME: text`` of a ``confluent_kafka.KafkaError`` (or ``str`` of anything else)."""
    name, text = getattr(err, "name", None), getattr(err, "str", None)
    if callable(name) and callable(text):
        return f"{name()}: {text()}"
    return str(err)


def _exception_text(exc: BaseException) -> str:
    """The KafkaError behind ``exc`` (a KafkaException, or what it caused), else ``exc`` itself."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if candidate is not None and candidate.args and callable(getattr(candidate.args[0], "name", None)):
            return _describe(candidate.args[0])
    return f"{type(exc).__name__}: {exc}"


def _failure_text(err: Any, owner: ConfluentProducer | None) -> str:
    text = _describe(err)
    if err.code() in _PURGED:  # purged by halt(), or by librdkafka itself after a fatal error: say why
        why = (owner._halted or owner._log.fatal) if owner is not None else None
        text += f" (not sent: {why or 'librdkafka purged it'})"
    return text


def _call(f: Callable[[Any], Any], arg: Any) -> None:
    try:
        f(arg)
    except Exception:  # noqa: BLE001 - as kafka-python's Future: one callback's error must not skip the others
        _log.opt(exception=True).error("A delivery callback raised")


class _LibrdkafkaLog:
    """confluent-kafka's ``logger``: librdkafka's log lines (served by poll) into loguru.

    Keeps the text of a fatal error (``fatal``): librdkafka then purges what it
    holds, and the purged records' delivery reports only say "purged".
    """

    def __init__(self) -> None:
        self.fatal: str | None = None

    def log(self, level: int, fmt: str, *args: Any) -> None:
        message = fmt % args if args else fmt
        if args and args[0] == "FATAL" and self.fatal is None:
            text = str(args[-1])
            self.fatal = "librdkafka stopped with a fatal error: " + text[text.find("Fatal error: ") + 13:] \
                if "Fatal error: " in text else text
        if args and args[0] == "CONFWARN" and "enable.gapless.guarantee" in message:
            _log.debug(message)  # "experimental": set on purpose, see the module contract
        elif level >= 50:
            _log.error(message)
        elif level >= 30:
            _log.warning(message)
        else:
            _log.debug(message)


def _on_client_error(err: Any) -> None:
    """librdkafka's ``error_cb``: client-wide, recoverable errors (a broker down); librdkafka retries by itself."""
    _log.warning("librdkafka: {}", _describe(err))
