"""SimulationProducerABC: publish a cadCAD message model to a Kafka topic, exactly once across restarts.

A subclass declares a model (a :class:`~framework.sources.simulation.SimulationModel`
subclass), a topic and optionally a key field, instead of an HTTP endpoint::

    class ChatSimProducer(SimulationProducerABC):
        name = "chat-sim"          # `python cmd/produce_cmd.py chat-sim` (add --spark to run on Spark)
        model = ChatModel
        topic = "chat"
        key_field = "room"         # optional: the key of a dict message without Message(key=...)
        partitions = 4             # optional: also the number of Spark tasks that publish in parallel

    summary = ChatSimProducer(Settings.from_env(), runs=8).run()

**Partition by run.** Every message of run ``r`` goes to partition ``(r - 1) % P``
(its key, if any, is written but does not choose the partition): a run is one
simulated world whose messages stay in order in one partition, and each partition
has exactly one writer even when the runs are published by parallel Spark tasks
(:mod:`framework.producer.distributed`), so the topic's content is the same
whether it was published locally or on Spark, and either can resume the other.
A bad message (not bytes/str/dict, no key field, not JSON-able) goes to partition
``(r - 1) % P`` of ``<topic>.dlq`` (which has ``P`` partitions too) with its reason
in the ``dlq-reason`` header and ``repr()`` as its value.

**Exactly once across restarts.** The guarantees and the argument are those of
:class:`~framework.producer.base.ProducerABC`, per *group* (a partition and its
dead-letter partition, one writer): positions are
:func:`~framework.sources.simulation.encode_position` of (run, timestep, substep,
index), increasing in the order they are sent; the idempotent producer (acks=all)
keeps each destination a gap-free prefix; a restart reads the last record of the
group's two destinations and starts the group at
``max(watermark, min(p_topic, p_dlq)) + 1``, skipping a message whose destination
already holds its position. Runs before that point are not simulated at all; the
run holding it is re-simulated from its start (deterministic) without calling
``messages()`` for transitions wholly before it. Assumptions: the model is
deterministic (same seed, same messages), the partition count does not change,
nobody else writes to the topics.

**Two processes.** With ``PIPELINE_SIMULATION_PROCESS=true`` (or ``model_process=True``) the model runs in
a child process (:class:`~framework.sources.model_process.ModelProcess`) that simulates
and encodes, while this process only sends: the two halves of the work run on two
cores (the chat model on 2 cores: 82k -> 124k messages/s, see ``docs/simulation.md``).
The child streams the same items in the same order as simulating here, so positions,
resume and the dead-letter records are the same either way. A model class defined
inside a function or in the script being run cannot be imported by the child and is
simulated here (logged once); Spark tasks always simulate in their own Python worker
(one core per task).

A model function that raises stops the run with one
:class:`~framework.errors.SimulationError` sentence; the messages sent before it
are flushed and acknowledged (that is what ``sent`` counts), none of the failing
timestep's were handed to Kafka.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, ClassVar, Iterable, Sequence

from framework.errors import DeclarationError
from framework.producer.base import _DEAD, _NAME, _SENT, ProducerABC
from framework.producer.clients import KafkaFailure
from framework.producer.resume import ResumeState, read_partition_tails
from framework.sources.model_process import ModelProcess, encoded_messages, model_reference
from framework.sources.simulation import SimulationModel, decode_position, run_range

__all__ = ["SimulationProducerABC", "partition_of_run"]

_FINAL = ("run", "stop", "dlq_topic")


def partition_of_run(run: int, partitions: int) -> int:
    """The partition (and dead-letter partition) of every message of ``run`` (1-based)."""
    return (run - 1) % partitions


class SimulationProducerABC(ProducerABC):
    """Base class of producers that publish a simulation model; see the module docstring."""

    abstract: ClassVar[bool] = True
    model: ClassVar[type[SimulationModel]]
    endpoint: ClassVar[str] = ""

    @classmethod
    def _check_declaration(cls) -> None:
        where = cls.__name__
        model = getattr(cls, "model", None)
        if not (isinstance(model, type) and issubclass(model, SimulationModel)) or model.__dict__.get("abstract"):
            raise DeclarationError(f"{where}.model must be a SimulationModel subclass, not {model!r}; declare it "
                                   "like `model = ChatModel`.")
        for attr in ("name", "topic"):
            value = getattr(cls, attr, None)
            if not isinstance(value, str) or not _NAME.match(value):
                raise DeclarationError(f"{where}.{attr} must be a name of letters, digits, '.', '_' or '-', not "
                                       f"{value!r}; declare it like `{attr} = \"chat\"`.")
        if cls.key_field is not None and (not isinstance(cls.key_field, str) or not cls.key_field):
            raise DeclarationError(f"{where}.key_field must be a field name or None, not {cls.key_field!r}.")
        if cls.partitions is not None and (isinstance(cls.partitions, bool) or not isinstance(cls.partitions, int)
                                           or cls.partitions < 1):
            raise DeclarationError(f"{where}.partitions must be a whole number of at least 1 or None, not "
                                   f"{cls.partitions!r}; declare it like `partitions = 4`.")
        for attr in _FINAL + ("transform",):
            if attr in cls.__dict__:
                raise DeclarationError(f"{where} overrides {attr}; a simulation producer declares model, topic, "
                                       "key_field and partitions, the base class owns the lifecycle.")

    @classmethod
    def source_description(cls) -> str:
        m = cls.model
        return f"cadCAD model {m.__name__} ({m.runs} runs x {m.timesteps} timesteps, seed {m.seed})"

    def __init__(self, settings: Any = None, *, runs: int | None = None, timesteps: int | None = None,
                 topic: str | None = None, groups: Sequence[int] | None = None, model_process: bool | None = None,
                 **kwargs: Any) -> None:
        """``runs``/``timesteps`` override the model's; ``topic`` the declared topic (benchmarks, tests);
        ``groups`` limits this producer to those partitions (a Spark task owns one); ``model_process``
        runs the model in a child process (default ``PIPELINE_SIMULATION_PROCESS``; see "Two processes"
        in the module docstring). Other keyword arguments are :class:`ProducerABC`'s (``follow`` is
        ignored, ``delay`` paces timesteps)."""
        super().__init__(settings, **kwargs)
        self.model_process = self.settings.simulation_process if model_process is None else model_process
        self._model_process_note: str | None = None
        self.simulation = self.model(runs=runs, timesteps=timesteps)
        if topic is not None:
            if not _NAME.match(topic):
                raise DeclarationError(f"Topic {topic!r} is not a valid Kafka topic name (letters, digits, '.', "
                                       "'_', '-').")
            self.topic = topic  # type: ignore[misc]  # this instance's topic shadows the declared class one
        self.groups = None if groups is None else sorted(set(groups))

    # ------------------------------------------------------------- topics and state
    def _ensure_topics(self) -> None:
        counts = self._clients.ensure_topics(self.topic, self.partitions, {}, owner=type(self).__name__)
        partitions = counts[self.topic]
        counts.update(self._clients.ensure_topics(self.dlq_topic, partitions, {}, owner=f"{self.dlq_topic} "
                                                  f"(one dead-letter partition per partition of {self.topic})"))
        self._partitions = partitions
        self._destinations = counts

    def prepare_topics(self) -> int:
        """Create the topic and ``<topic>.dlq`` if missing (before parallel writers start); the partition count."""
        try:
            self._ensure_topics()
        finally:
            self._clients.close()
        return self._partitions

    def owned_runs(self) -> list[int]:
        """The runs this producer publishes, in the order it publishes them."""
        runs = range(1, self.simulation.runs + 1)
        if self.groups is None:
            return list(runs)
        return [r for r in runs if partition_of_run(r, self._partitions) in self.groups]

    def _read_group_starts(self, groups: Iterable[int]) -> tuple[ResumeState, dict[int, int]]:
        from kafka.errors import KafkaError

        groups = list(groups)
        destinations = [(t, p) for p in groups for t in (self.topic, self.dlq_topic)]
        try:
            tails = read_partition_tails(self._clients.consumer_factory, destinations)
        except (KafkaError, OSError) as exc:
            raise KafkaFailure(f"reading the end of {self.topic} raised {type(exc).__name__}: {exc}") from None
        starts = {}
        for p in groups:
            (main, mark_a), (dead, mark_b) = tails[(self.topic, p)], tails[(self.dlq_topic, p)]
            starts[p] = max(mark_a, mark_b, min(main, dead)) + 1
        state = ResumeState(high_water={d: pos for d, (pos, _) in tails.items()},
                            watermark=max((m for _, m in tails.values()), default=-1))
        return state, starts

    # ------------------------------------------------------------- one session
    def _session_run(self) -> None:
        """Read each owned group's tail, simulate the runs from there, send, flush and check."""
        self._failure = None
        runs = self.owned_runs()
        feed = self._start_model_process()
        try:
            groups = sorted({partition_of_run(r, self._partitions) for r in runs})
            self._state, starts = self._read_group_starts(groups)
            self.log.info("Resuming {} ({} run(s) of {} in partition(s) {}{}) at {}", self.topic, len(runs),
                          type(self.simulation).__name__, ",".join(map(str, groups)) or "none",
                          "" if feed is None else f"; the model in process {feed.pid}",
                          "; ".join(f"p{p}: {_where(s)}" for p, s in starts.items()) or "nothing to do")
            jobs = [(r, starts[partition_of_run(r, self._partitions)]) for r in runs
                    if run_range(r)[1] >= starts[partition_of_run(r, self._partitions)]]
            self._publish_all(jobs, feed, min(starts.values(), default=0))
        finally:
            if feed is not None:
                feed.close()

    def _start_model_process(self) -> ModelProcess | None:
        """The child process that will simulate this session's runs, started now; None to simulate here."""
        if not self.model_process:
            return None
        if isinstance(reference := model_reference(self.model), str):
            if self._model_process_note is None:
                self._model_process_note = reference
                self.log.info("Simulating {} in this process: {} (only a model class a child process can import "
                              "from its module runs in a process of its own)", self.model.__name__, reference)
            return None
        return ModelProcess(self.model, self.simulation.runs, self.simulation.timesteps, self.key_field).start()

    def _publish_all(self, jobs: list[tuple[int, int]], feed: ModelProcess | None, first: int) -> None:
        """Send every message of ``jobs`` (``(run, first position)``), from ``feed`` or simulated here;
        ``first``: the lowest start of the owned groups (the watermark starts below it)."""
        self._pending = deque()
        self._acked_through = first - 1
        should_stop = self._stop.is_set
        items = (feed.messages(jobs, should_stop) if feed is not None
                 else encoded_messages(self.simulation, jobs, self.key_field, should_stop))
        producer = self._clients.producer()
        partitions, last_timestep = self._partitions, None
        try:
            for run, position, key, value, reason in items:
                if self._failure is not None:
                    raise KafkaFailure(self._failure)
                if should_stop():
                    break
                if self.delay:
                    timestep = decode_position(position)[1]
                    if last_timestep is not None and timestep != last_timestep:
                        self._stop.wait(self.delay)
                    last_timestep = timestep
                partition = partition_of_run(run, partitions)
                if self.first_position is None:
                    self.first_position = position
                self.last_position = position
                if reason is not None:
                    self._dead_letter_message(producer, partition, position, value, reason)
                elif self._state.already_written((self.topic, partition), position):
                    self.skipped_existing += 1
                    self._track(position)
                else:
                    self._send(producer, self.topic, partition, key, value, position, [], _SENT)
                if time.monotonic() >= self._next_progress:
                    self._log_progress()
        finally:
            self._flush_and_check(producer)

    def _dead_letter_message(self, producer: Any, partition: int, position: int, text: bytes, reason: str) -> None:
        """Send a bad message (``text``: its ``repr()``) to its dead-letter partition with ``reason``."""
        if self._state.already_written((self.dlq_topic, partition), position):
            self.skipped_existing += 1
            return self._track(position)
        run, timestep, substep, index = decode_position(position)
        reason = f"{reason} (run {run}, timestep {timestep}, substep {substep}, message {index})"
        headers = [("dlq-reason", reason.encode()), ("source-topic", self.topic.encode())]
        self._send(producer, self.dlq_topic, partition, None, text, position, headers, _DEAD)
        self._bad_lines += 1
        if self._bad_lines <= 20:
            self.log.warning("Position {}: {}; sent to {}", position, reason, self.dlq_topic)

def _where(start: int) -> str:
    run, timestep, substep, index = decode_position(start)
    return "the beginning" if start == 0 else f"run {run}, timestep {timestep}, substep {substep}, message {index}"
