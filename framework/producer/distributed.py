"""Publish a simulation from Spark executors: one task per partition, each with its own idempotent producer.

``python cmd/produce_cmd.py chat-sim --spark [--runs N]`` calls :func:`publish_on_spark`:

1. the driver creates the topic and its dead-letter topic (``P`` partitions each);
2. one Spark task per partition that has runs (``min(P, runs)`` tasks) runs, on an
   executor, a :class:`~framework.producer.simulation.SimulationProducerABC` limited to
   that partition (``groups=[p]``): it reads the tail of partition ``p`` and of
   ``<topic>.dlq`` partition ``p``, simulates the runs ``r`` with ``(r - 1) % P == p``
   in order from where the tail says, and publishes them (acks=all, idempotent);
3. the driver collects the tasks' summaries into a :class:`DistributedResult`.

**Start-up before the clock.** Before step 2 the driver waits until the executors the
application asked for are registered (``spark.executor.instances``, or
``spark.cores.max / spark.executor.cores`` on a standalone cluster; Spark's own
``spark.scheduler.minRegisteredResourcesRatio=1.0`` makes the session's start wait for them
too), then runs a warm-up job that imports the producer class and cadCAD and steps the model
once in every task slot's Python worker (a barrier job, so one task per slot, when the slot
count is known; a plain job of as many tasks as step 2 otherwise). Python workers are reused
(``spark.python.worker.reuse``, Spark's default), so a task of step 2 starts in a warm
worker and its ``ready`` time is when it starts publishing, not when an executor or an
import finished. Step 2 itself is a plain job, not a barrier one: a barrier stage that
loses one task retries all of them, also the healthy ones still writing, which would put two
writers on one partition.

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
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Iterator, cast

from framework.errors import FrameworkError
from framework.log import get_logger
from framework.producer.simulation import SimulationProducerABC, partition_of_run
from framework.producer.summary import ProduceSummary
from framework.settings import Settings

log = get_logger("produce-spark")

__all__ = ["DistributedResult", "TaskResult", "publish_on_spark", "registered_executors", "requested_executors",
           "task_slots", "wait_for_executors"]

#: default seconds :func:`publish_on_spark` waits for the requested executors to register
REGISTER_TIMEOUT = 120.0


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
    #: CPU seconds of the task's Python worker between ``ready`` and ``ended`` (its client's threads included)
    cpu_seconds: float = 0.0


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
    #: executors registered when the publish job started (0 in local mode, where the driver runs the tasks)
    registered_executors: int = 0
    #: concurrent task slots, when known (local[N], or executors x spark.executor.cores / spark.task.cpus)
    slots: int | None = None
    #: the Python workers ("host:pid") the warm-up job ran in, and its wall-clock seconds
    warmed: list[str] = field(default_factory=list)
    warm_up_seconds: float = 0.0

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
    def start_skew(self) -> float:
        """Seconds between the first and the last Python worker's first ``ready`` (how unevenly they started)."""
        first: dict[tuple[str, int], float] = {}
        for t in self.tasks:
            first[(t.host, t.pid)] = min(first.get((t.host, t.pid), t.ready), t.ready)
        return max(first.values()) - min(first.values()) if first else 0.0

    @property
    def cold_tasks(self) -> int:
        """Tasks that ran in a Python worker the warm-up job had not run in (so they imported on the clock)."""
        return sum(1 for t in self.tasks if f"{t.host}:{t.pid}" not in self.warmed)

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
                f"{self.job_seconds:.1f}s, publishing {self.publish_seconds:.1f}s (start skew "
                f"{self.start_skew:.2f}s), {self.messages_per_second:.0f} messages/s"
                + (f"; {len(self.errors)} task(s) failed" if self.errors else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "topic": self.topic, "master": self.master, "runs": self.runs,
                "partitions": self.partitions, "job_seconds": self.job_seconds, "sent": self.sent,
                "publish_seconds": self.publish_seconds, "messages_per_second": self.messages_per_second,
                "executors": self.executors, "registered_executors": self.registered_executors,
                "slots": self.slots, "warmed": self.warmed, "warm_up_seconds": self.warm_up_seconds,
                "start_skew": self.start_skew, "cold_tasks": self.cold_tasks,
                "tasks": [asdict(t) for t in self.tasks]}


def publish_on_spark(cls: type[SimulationProducerABC], settings: Settings, *, runs: int | None = None,
                     timesteps: int | None = None, topic: str | None = None, spark: Any = None,
                     extra_conf: dict[str, str] | None = None,
                     register_timeout: float = REGISTER_TIMEOUT) -> DistributedResult:
    """Publish ``cls``'s runs from Spark tasks (see the module docstring); blocks until the job ends.

    Uses ``spark`` if given, else builds a session from ``settings``
    (``PIPELINE_SPARK_MASTER``) and stops it at the end. Raises :class:`FrameworkError` when
    the executors the application asked for are not all registered within
    ``register_timeout`` seconds (nothing is published then).
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
                    p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p),
                # the session's start waits until every requested executor (core) is registered
                "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                "spark.scheduler.maxRegisteredResourcesWaitingTime": f"{max(1, round(register_timeout))}s",
                # a barrier warm-up that cannot get its slots fails within seconds (default: 40 checks 15 s apart)
                "spark.scheduler.barrier.maxConcurrentTasksCheck.interval": "1s",
                "spark.scheduler.barrier.maxConcurrentTasksCheck.maxFailures": "5"}
        conf.update(extra_conf or {})
        spark = build_spark_session(settings, app_name=f"produce-{cls.name}", extra_conf=conf)
    try:
        sc = spark.sparkContext
        executors = wait_for_executors(sc, register_timeout)
        slots = task_slots(sc, executors)
        warm_started = time.monotonic()
        warmed = _warm_up(sc, spec, slots, len(groups))
        warm_up_seconds = time.monotonic() - warm_started
        log.info("Publishing {} runs of {} to {} from {} Spark task(s) on {} ({} executor(s), {} slot(s), {} "
                 "Python worker(s) warmed in {:.1f}s)", driver.simulation.runs, cls.model.__name__, driver.topic,
                 len(groups), sc.master, executors, "unknown" if slots is None else slots, len(warmed),
                 warm_up_seconds)
        executors = registered_executors(sc)  # more may have come during the warm-up when none were asked for
        started = time.monotonic()
        rows = sc.parallelize(groups, len(groups)).mapPartitions(partial(_publish_task, spec)).collect()
        elapsed = time.monotonic() - started
        result = DistributedResult(name=cls.name, topic=driver.topic, master=sc.master, runs=driver.simulation.runs,
                                   partitions=partitions, job_seconds=elapsed,
                                   tasks=sorted((TaskResult(**row) for row in rows), key=lambda t: t.partition),
                                   registered_executors=executors, slots=slots, warmed=warmed,
                                   warm_up_seconds=warm_up_seconds)
    finally:
        if own:
            spark.stop()
    log.info("{}", result.line())
    return result


def requested_executors(conf: Any) -> int | None:
    """The executors a Spark application asked for, from its ``SparkConf``; 0 in local mode, None when unknown.

    ``spark.executor.instances`` (YARN, Kubernetes; not with dynamic allocation), else
    ``spark.cores.max // spark.executor.cores`` (standalone: the application gets executors of
    ``spark.executor.cores`` cores up to ``spark.cores.max`` cores, per Spark's standalone docs).
    """
    if conf.get("spark.master", "").startswith("local"):
        return 0
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        return None
    if conf.get("spark.executor.instances"):
        return int(conf.get("spark.executor.instances"))
    cores_max, executor_cores = conf.get("spark.cores.max"), conf.get("spark.executor.cores")
    if cores_max and executor_cores:
        return max(1, int(cores_max) // int(executor_cores))
    return None


def registered_executors(sc: Any) -> int:
    """Executors registered with ``sc`` now, the driver not counted (0 in local mode)."""
    return max(0, len(sc._jsc.sc().statusTracker().getExecutorInfos()) - 1)


def wait_for_executors(sc: Any, timeout: float, poll: float = 0.2) -> int:
    """Block until the executors the application asked for are registered; the registered count.

    Returns at once in local mode and when the count asked for is unknown. Raises
    :class:`FrameworkError` after ``timeout`` seconds with fewer.
    """
    wanted = requested_executors(sc.getConf())
    deadline = time.monotonic() + timeout
    have = registered_executors(sc)
    while wanted and have < wanted:
        if time.monotonic() >= deadline:
            raise FrameworkError(f"Only {have} of the {wanted} executors this Spark application asked for "
                                 f"(spark.executor.instances, or spark.cores.max / spark.executor.cores) registered "
                                 f"with {sc.master} within {timeout:.0f} s; free cores on the cluster or ask for "
                                 "fewer.")
        time.sleep(poll)
        have = registered_executors(sc)
    return have


def task_slots(sc: Any, executors: int) -> int | None:
    """Tasks ``sc`` can run at once, when known: N for ``local[N]`` (``local[*]``: this machine's cores), else
    ``executors x spark.executor.cores // spark.task.cpus`` when ``spark.executor.cores`` is set."""
    conf = sc.getConf()
    task_cpus = int(conf.get("spark.task.cpus", "1"))
    master = sc.master
    if master == "local":
        return 1
    local = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master)
    if local:
        return (os.cpu_count() or 1) if local.group(1) == "*" else int(local.group(1))
    if master.startswith("local") or not conf.get("spark.executor.cores") or not executors:
        return None
    return executors * int(conf.get("spark.executor.cores")) // task_cpus or None


def _warm_up(sc: Any, spec: dict[str, Any], slots: int | None, tasks: int) -> list[str]:
    """Import the producer and cadCAD in the Python workers that will publish; their "host:pid", sorted.

    A barrier job of one task per slot when ``slots`` is known (all its tasks run at once, so each
    slot's worker is warmed), else a plain job of ``tasks`` tasks; a barrier job Spark refuses
    (fewer free slots than counted) falls back to the plain one.
    """
    if slots:
        rdd = sc.parallelize(range(slots), slots)
        try:
            return sorted(set(rdd.barrier().mapPartitions(partial(_warm_task, spec, True)).collect()))
        except Exception as exc:  # noqa: BLE001 - py4j wraps Spark's refusal; the plain job below still warms
            log.warning("The barrier warm-up job over {} slot(s) failed ({}); warming with a plain job", slots,
                        str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
    rdd = sc.parallelize(range(tasks), tasks)
    return sorted(set(rdd.mapPartitions(partial(_warm_task, spec, False)).collect()))


def _prepare(spec: dict[str, Any]) -> type[SimulationProducerABC]:
    """On an executor: the paths, the log level and the producer class (imported, with cadCAD and the clients)."""
    for path in spec["paths"]:
        if path not in sys.path:
            sys.path.append(path)
    settings: Settings = spec["settings"]
    from framework.log import configure_logging

    configure_logging("WARNING" if settings.log_level.upper() in ("INFO", "DEBUG", "TRACE", "SUCCESS")
                      else settings.log_level)
    cls = _load_class(spec["module"], spec["qualname"])
    import cadCAD.engine.simulation  # noqa: F401 - imported before the clock starts (pandas takes seconds)
    import kafka  # noqa: F401 - the tail reader's and the admin's client

    return cls


def _warm_task(spec: dict[str, Any], barrier: bool, _: Iterator[int]) -> Iterator[str]:
    """Runs on an executor: import everything a publish task needs and step the model once; "host:pid"."""
    import socket

    cls = _prepare(spec)
    for _item in cls.model(runs=1, timesteps=1).simulate(1):
        pass
    if barrier:
        from pyspark import BarrierTaskContext

        BarrierTaskContext.get().barrier()  # every slot's task is running: none took two slots' turns
    yield f"{socket.gethostname()}:{os.getpid()}"


def _publish_task(spec: dict[str, Any], groups: Iterator[int]) -> Iterator[dict[str, Any]]:
    """Runs on an executor: publish the runs of each partition in ``groups`` with its own producer."""
    import socket

    settings: Settings = spec["settings"]
    cls = _prepare(spec)  # cached in a warm worker
    for group in groups:
        producer = cls(settings, runs=spec["runs"], timesteps=spec["timesteps"], topic=spec["topic"],
                       groups=[group], progress_interval=3600.0, model_process=False)  # a task: one core
        runs = [r for r in range(1, spec["runs"] + 1) if partition_of_run(r, spec["partitions"]) == group]
        ready, cpu, error = time.time(), time.process_time(), ""
        summary: ProduceSummary | None
        try:
            summary = producer.run()
        except Exception as exc:  # noqa: BLE001 - reported to the driver; a retry would fail the same way
            summary, error = producer.summary, f"{type(exc).__name__}: {exc}"
        yield {"partition": group, "runs": runs, "sent": summary.sent if summary else 0,
               "skipped_existing": summary.skipped_existing if summary else 0,
               "dead_lettered": summary.dead_lettered if summary else 0, "ready": ready, "ended": time.time(),
               "host": socket.gethostname(), "pid": os.getpid(), "error": error,
               "cpu_seconds": time.process_time() - cpu}


def _load_class(module: str, qualname: str) -> type[SimulationProducerABC]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return cast("type[SimulationProducerABC]", obj)  # the driver sent the qualname of such a class
