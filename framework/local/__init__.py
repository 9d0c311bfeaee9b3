"""Local services of the embedded default, each bound to 127.0.0.1 with its data under the state directory.

- :mod:`framework.local.kafka_broker`: one Apache Kafka broker (KRaft) from the official jars.
- :mod:`framework.local.kafka_cluster`: several brokers (``PIPELINE_BROKER_COUNT``).
- :mod:`framework.local.spark_cluster`: a Spark standalone master and workers.
- :mod:`framework.local.postgres`: a PostgreSQL server (Debian's package): sinks, dashboard, Iceberg catalog.
- :mod:`framework.local.trino`: Trino 476 over the Iceberg catalog (:mod:`framework.local.trino_dist`: its
  Java 24+ JDK and its download from Maven Central).
- :mod:`framework.local.jars`: Maven artifacts resolved and cached (Kafka, Spark's connector).
- :mod:`framework.local.embedded`: start what a command needs, stop what it started.
"""
