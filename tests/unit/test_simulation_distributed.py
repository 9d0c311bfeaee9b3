"""How publish_on_spark counts the executors and slots it waits for, and what its result reports (no Spark)."""
from __future__ import annotations

import pytest

from framework.errors import FrameworkError
from framework.producer.distributed import (DistributedResult, TaskResult, requested_executors, task_slots,
                                            wait_for_executors)


class FakeSc:
    """The parts of a SparkContext the functions read: master, getConf().get, the executor list."""

    def __init__(self, master: str, conf: dict[str, str], executors: int = 0) -> None:
        self.master, self.conf, self.executors = master, {"spark.master": master, **conf}, executors

    def getConf(self) -> "FakeSc":
        return self

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.conf.get(key, default)

    @property
    def _jsc(self) -> "FakeSc":
        return self

    def sc(self) -> "FakeSc":
        return self

    def statusTracker(self) -> "FakeSc":
        return self

    def getExecutorInfos(self) -> list[str]:
        return ["driver"] + ["executor"] * self.executors


def test_requested_executors_from_instances_or_cores_max_and_unknown_otherwise():
    assert requested_executors(FakeSc("local[2]", {}).conf) == 0
    standalone = {"spark.cores.max": "4", "spark.executor.cores": "2"}
    assert requested_executors(FakeSc("spark://h:7077", standalone).conf) == 2
    assert requested_executors(FakeSc("yarn", {"spark.executor.instances": "3"}).conf) == 3
    assert requested_executors(FakeSc("spark://h:7077", {"spark.executor.cores": "1"}).conf) is None
    assert requested_executors(FakeSc("yarn", {"spark.executor.instances": "3",
                                               "spark.dynamicAllocation.enabled": "true"}).conf) is None


def test_task_slots_of_local_masters_and_of_registered_executors():
    assert task_slots(FakeSc("local", {}), 0) == 1
    assert task_slots(FakeSc("local[3]", {}), 0) == 3
    assert task_slots(FakeSc("local[4, 2]", {}), 0) == 4
    assert task_slots(FakeSc("spark://h:7077", {"spark.executor.cores": "2", "spark.task.cpus": "1"}), 2) == 4
    assert task_slots(FakeSc("spark://h:7077", {}), 2) is None


def test_waiting_for_executors_that_never_register_names_the_counts():
    sc = FakeSc("spark://h:7077", {"spark.cores.max": "2", "spark.executor.cores": "1"}, executors=1)
    with pytest.raises(FrameworkError, match="Only 1 of the 2 executors"):
        wait_for_executors(sc, timeout=0.3, poll=0.05)
    sc.executors = 2
    assert wait_for_executors(sc, timeout=0.3, poll=0.05) == 2


def test_start_skew_is_between_the_workers_first_tasks_and_cold_tasks_are_counted():
    tasks = [TaskResult(0, [1], ready=10.0, ended=11.0, host="h", pid=1),
             TaskResult(1, [2], ready=10.25, ended=11.5, host="h", pid=2),
             TaskResult(2, [3], ready=11.0, ended=12.0, host="h", pid=1)]
    result = DistributedResult("x", "t", "spark://h:7077", 3, 3, 2.0, tasks, warmed=["h:1"])
    assert result.start_skew == pytest.approx(0.25)
    assert result.publish_seconds == pytest.approx(2.0)
    assert result.cold_tasks == 1
