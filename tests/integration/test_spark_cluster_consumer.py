"""The shipped Parquet consumer, unchanged, on a Spark standalone cluster: exact rows, work done by the executors.

A master and two workers (framework.local.spark_cluster.LocalSparkCluster),
the real API and producers filling ``metrics`` and ``workorder`` on the session
broker from a small generated dataset, then ``cmd/consume_cmd.py parquet
--bounded`` as a subprocess with ``PIPELINE_SPARK_MASTER=<master URL>`` and
``PIPELINE_SPARK_DRIVER_HOST=127.0.0.1``. Checked: the tables hold exactly the
source records, the master granted the application one core on each worker, and
each worker ran an executor of that application (its work directory).
"""
from __future__ import annotations

import contextlib

import pytest

from framework.admin import KafkaAdmin
from framework.local.processes import alive as _alive
from framework.settings import Settings
from framework.testing import running_local_broker
from framework.local.spark_cluster import LocalSparkCluster
from tests.integration.pipeline_procs import Pipeline, assert_tables_hold_exactly, generate_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOPICS = ("metrics", "workorder", "metrics.dlq", "workorder.dlq")
APP_NAME = "consumer-parquet"  # build_spark_session(app_name=f"consumer-{name}")


@pytest.mark.timeout(420)
def test_parquet_consumer_on_a_standalone_cluster_writes_exact_tables_from_its_executors(kafka_broker, tmp_path):
    source = generate_data(tmp_path / "data")
    totals = {table: len(records) for table, records in source.items()}
    with contextlib.ExitStack() as stack:
        bootstrap = kafka_broker.bootstrap_servers
        with KafkaAdmin(Settings(), bootstrap_servers=bootstrap) as admin:
            taken = set(TOPICS) & set(admin.list_topics())
        if taken:  # the shipped topics have fixed names; someone in this session used them already
            bootstrap = stack.enter_context(running_local_broker(tmp_path / "kafka")).bootstrap_servers
        run = Pipeline(tmp_path, bootstrap, tmp_path / "data", spark_executor_memory="512m",
                       spark_executor_cores=1)
        stack.callback(run.cleanup)
        try:
            run.api("--delay", "0")
            producer = run.producer()
            assert producer.wait(120) == 0, run.diagnostics()
            assert run.counts() == totals
            run.mark("produced")

            cluster = stack.enter_context(LocalSparkCluster(workers=2, cores_per_worker=1, memory="1g",
                                                            work_dir=tmp_path / "spark"))
            pids = cluster.pids()
            assert set(pids) == {"master", "worker-1", "worker-2"}
            run.mark("spark cluster up")
            consumer = run.consumer("--bounded", spark_master=cluster.master_url, spark_driver_host="127.0.0.1")
            code = consumer.wait(300)
            run.mark("bounded consumer done")
            assert code == 0, run.diagnostics()
            assert "(bounded) finished after" in consumer.text(), consumer.tail()

            status = cluster.master_status()
            apps = [a for a in status.get("completedapps", []) + status.get("activeapps", [])
                    if a.get("name") == APP_NAME]
            assert len(apps) == 1, f"the master lists no single {APP_NAME!r} application: {status}"
            app = apps[0]
            assert app["cores"] == 2, app  # one core on each of the two workers
            for worker in ("worker-1", "worker-2"):  # <work-dir>/<app id>/<executor id>/ per executor
                executors = list((tmp_path / "spark" / worker / app["id"]).glob("*/stderr"))
                log = tmp_path / "spark" / f"{worker}.log"
                assert executors, f"{worker} ran no executor of {app['id']}; end of {log}:\n{log.read_text()[-3000:]}"

            assert_tables_hold_exactly(run.output_dir, source, run.report())
        except BaseException:
            print(run.diagnostics())
            raise
        finally:
            print(run.report())
    for name, pid in pids.items():
        assert not _alive(pid), f"Spark {name} (pid {pid}) still runs after stop()"
