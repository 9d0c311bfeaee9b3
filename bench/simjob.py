"""One Spark publish of the shipped chat simulation, in its own process (a process holds one SparkContext).

    PIPELINE_SPARK_MASTER=spark://127.0.0.1:7077 PIPELINE_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \\
        python -m bench.simjob --topic T --runs 4 --timesteps 300 --executors 2

``--executors K`` caps the application at K cores of one core each
(``spark.cores.max=K``, ``spark.executor.cores=1``), so a standalone cluster of
K or more one-core workers gives it K executors. The last stdout line is
:meth:`~framework.producer.distributed.DistributedResult.to_dict` as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

from apps.simulations import ChatSimProducer
from framework.producer.distributed import publish_on_spark
from framework.settings import Settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topic", required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--timesteps", type=int, required=True)
    p.add_argument("--executors", type=int, required=True)
    args = p.parse_args(argv)
    settings = Settings.from_env()
    conf = {"spark.cores.max": str(args.executors), "spark.executor.cores": "1"}
    if settings.spark_master.startswith("local"):
        settings = settings.replace(spark_master=f"local[{args.executors}]")
    result = publish_on_spark(ChatSimProducer, settings, runs=args.runs, timesteps=args.timesteps,
                              topic=args.topic, extra_conf=conf)
    print(json.dumps(result.to_dict()))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
