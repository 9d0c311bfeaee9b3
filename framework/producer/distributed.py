"""Publish a simulation from Spark executors: one task per partition, each with its own idempotent producer.

``python cmd/produce_cmd.py chat-sim --spark [--runs N]`` calls :func:`publish_on_spark`:

1. the driver creates the topic and its dead-letter topic (``P`` partitions each);
2. one Spark task per partition that has runs (``min(P, runs)`` tasks) runs, on an
   executor, a :class:`~framework.producer.simulation.SimulationProducerABC` limited to
   that partition (``groups=[p]``): it reads the tail of partition ``p`` and of
   ``<topic>.dlq`` partition ``p``, simulates the runs ``r`` with ``(r - 1) % P == p``
   in order from where the tail says, and publishes them (acks=all, idempotent);
3. the driver collects the tasks' summaries into a :class:`DistributedResult`.

**Guarantee: exactly once**, also when a task is retried (a failed executor, a lost
task): every partition has exactly one writer at a time, so the single-producer
argument of :class:`~framework.producer.base.ProducerABC` holds per partition, and a
retried task resumes from the partition's tail instead of from the beginning. The
condition is that two attempts of one task never run at the same time:
speculative execution is switched off for the job (``spark.speculation=false``);
a zombie attempt whose executor was declared lost but still runs would break it
(Kafka transactions with one ``transactional.id`` per partition would fence it; not
done here).

**Why not Spark's Kafka sink.** ``df.write.format("kafka")`` is *at-least-once*: a
retried task writes its rows again, and a job rerun writes everything again (the
sink has no idempotence across producer sessions and no resume point). It would
also need the whole simulation as a DataFrame first. A producer per task with the
position scheme gives exactly once for the same work.

**Executors and Python.** The tasks run Python on the executors: ``spark.pyspark.python``
is this interpreter and ``spark.executorEnv.PYTHONPATH`` adds the working directory,
so the producer's module must be importable there (installed in the environment, or a
module in the working directory of a local/standalone cluster on this machine; for a
remote cluster ship it with ``spark.submit.pyFiles``).
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Iterator, cast

from framework.log import get_logger
from framework.producer.simulation import SimulationProducerABC, partition_of_run
from framework.producer.summary import ProduceSummary
from framework.settings import Settings

log = get_logger("produce-spark")

__all__ = ["DistributedResult", "TaskResult", "publish_on_spark"]


@dataclass(frozen=True)
class TaskResult:
    """What one Spark task published (wall-clock seconds since the epoch for ``ready``/``ended``)."""

    partition: int
    runs: list[int]
    sent: int = 0
    skipped_existing: int = 0
    dead_lettered: int = 0
    ready: float = 0.0
    ended: float = 0.0
    host: str = ""
    pid: int = 0
    error: str = ""


@dataclass
class DistributedResult:
    """The tasks' results of one Spark publish, and their totals."""

    name: str
    topic: str
    master: str
    runs: int
    partitions: int
    job_seconds: float
    tasks: list[TaskResult] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(t.sent for t in self.tasks)

    @property
    def skipped_existing(self) -> int:
        return sum(t.skipped_existing for t in self.tasks)

    @property
    def dead_lettered(self) -> int:
        return sum(t.dead_lettered for t in self.tasks)

    @property
    def errors(self) -> list[str]:
        return [f"partition {t.partition}: {t.error}" for t in self.tasks if t.error]

    @property
    def publish_seconds(self) -> float:
        """From the first task ready to publish (imports done) to the last task's end."""
        if not self.tasks:
            return 0.0
        return max(t.ended for t in self.tasks) - min(t.ready for t in self.tasks)

    @property
    def messages_per_second(self) -> float:
        seconds = self.publish_seconds
        return self.sent / seconds if seconds > 0 else 0.0

    @property
    def executors(self) -> int:
        """Distinct Python worker processes (host, pid) that ran tasks."""
        return len({(t.host, t.pid) for t in self.tasks})

    def line(self) -> str:
        return (f"{self.name} on Spark ({self.master}, {len(self.tasks)} tasks in {self.executors} Python "
                f"worker(s)): {self.sent} sent to {self.topic}, {self.skipped_existing} already there, "
                f"{self.dead_lettered} dead-lettered; {self.runs} runs over {self.partitions} partitions; job "
                f"{self.job_seconds:.1f}s, publishing {self.publish_seconds:.1f}s, "
                f"{self.messages_per_second:.0f} messages/s" + (f"; {len(self.errors)} task(s) failed"
                                                               if self.errors else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "topic": self.topic, "master": self.master, "runs": self.runs,
                "partitions": self.partitions, "job_seconds": self.job_seconds, "sent": self.sent,
                "publish_seconds": self.publish_seconds, "messages_per_second": self.messages_per_second,
                "executors": self.executors, "tasks": [asdict(t) for t in self.tasks]}


def publish_on_spark(cls: type[SimulationProducerABC], settings: Settings, *, runs: int | None = None,
                     timesteps: int | None = None, topic: str | None = None, spark: Any = None,
                     extra_conf: dict[str, str] | None = None) -> DistributedResult:
    """Publish ``cls``'s runs from Spark tasks (see the module docstring); blocks until the job ends.

    Uses ``spark`` if given, else builds a session from ``settings``
    (``PIPELINE_SPARK_MASTER``) and stops it at the end.
    """
    driver = cls(settings, runs=runs, timesteps=timesteps, topic=topic)
    partitions = driver.prepare_topics()
    groups = sorted({partition_of_run(r, partitions) for r in range(1, driver.simulation.runs + 1)})
    spec = {"module": cls.__module__, "qualname": cls.__qualname__, "settings": settings,
            "runs": driver.simulation.runs, "timesteps": driver.simulation.timesteps, "topic": driver.topic,
            "partitions": partitions, "paths": [os.getcwd()]}
    own = spark is None
    if own:
        from framework.spark import build_spark_session

        conf = {"spark.speculation": "false", "spark.pyspark.python": sys.executable,
                "spark.executorEnv.PYTHONPATH": os.pathsep.join(
                    p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)}
        conf.update(extra_conf or {})
        spark = build_spark_session(settings, app_name=f"produce-{cls.name}", extra_conf=conf)
    try:
        sc = spark.sparkContext
        log.info("Publishing {} runs of {} to {} from {} Spark task(s) on {}", driver.simulation.runs,
                 cls.model.__name__, driver.topic, len(groups), sc.master)
        started = time.monotonic()
        rows = sc.parallelize(groups, len(groups)).mapPartitions(partial(_publish_task, spec)).collect()
        elapsed = time.monotonic() - started
        result = DistributedResult(name=cls.name, topic=driver.topic, master=sc.master, runs=driver.simulation.runs,
                                   partitions=partitions, job_seconds=elapsed,
                                   tasks=sorted((TaskResult(**row) for row in rows), key=lambda t: t.partition))
    finally:
        if own:
            spark.stop()
    log.info("{}", result.line())
    return result


def _publish_task(spec: dict[str, Any], groups: Iterator[int]) -> Iterator[dict[str, Any]]:
    """Runs on an executor: publish the runs of each partition in ``groups`` with its own producer."""
    import socket

    for path in spec["paths"]:
        if path not in sys.path:
            sys.path.append(path)
    settings: Settings = spec["settings"]
    from framework.log import configure_logging

    configure_logging("WARNING" if settings.log_level.upper() in ("INFO", "DEBUG", "TRACE", "SUCCESS")
                      else settings.log_level)
    cls = _load_class(spec["module"], spec["qualname"])
    import cadCAD.engine.simulation  # noqa: F401 - imported before the clock starts (pandas takes seconds)

    for group in groups:
        producer = cls(settings, runs=spec["runs"], timesteps=spec["timesteps"], topic=spec["topic"],
                       groups=[group], progress_interval=3600.0)
        runs = [r for r in range(1, spec["runs"] + 1) if partition_of_run(r, spec["partitions"]) == group]
        ready, error = time.time(), ""
        summary: ProduceSummary | None
        try:
            summary = producer.run()
        except Exception as exc:  # noqa: BLE001 - reported to the driver; a retry would fail the same way
            summary, error = producer.summary, f"{type(exc).__name__}: {exc}"
        yield {"partition": group, "runs": runs, "sent": summary.sent if summary else 0,
               "skipped_existing": summary.skipped_existing if summary else 0,
               "dead_lettered": summary.dead_lettered if summary else 0, "ready": ready, "ended": time.time(),
               "host": socket.gethostname(), "pid": os.getpid(), "error": error}


def _load_class(module: str, qualname: str) -> type[SimulationProducerABC]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return cast("type[SimulationProducerABC]", obj)  # the driver sent the qualname of such a class
