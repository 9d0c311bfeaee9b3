"""Benchmarks of the pipeline: ``python cmd/bench_cmd.py`` (see :mod:`bench.command`).

Each figure is printed next to a reference measured in the same run, on the same machine:

==========  ==========================================================  =============================
section     ours                                                        reference
==========  ==========================================================  =============================
produce     API (delay=0) -> ProducerABC -> Kafka, and the producer      Kafka's ProducerPerformance
            alone fed from memory: records/s, MB/s, avg and p99 latency  (kafka-producer-perf-test)
api         records/s the API serves a plain client at delay=0          the full-path producer
consume     ConsumerSparkABC bounded, no rate limit, into Parquet       Spark batch read -> Parquet
latency     API -> Kafka -> Spark (1 s trigger) -> Parquet, p50/p99     an ideal consumer, same trigger
sweep       partitions x batch.size x linger.ms x compression x acks    ProducerPerformance per point
profile     where the produce path's time goes; other designs           (the same runs)
==========  ==========================================================  =============================

Modules: :mod:`~bench.environment` (broker, Spark, topics),
:mod:`~bench.synthetic` (records and an in-memory feed),
:mod:`~bench.clients` (timed, no-op and librdkafka producers),
:mod:`~bench.perftool` (the Java reference), :mod:`~bench.stats`,
:mod:`~bench.report`, one module per section, :mod:`~bench.runner`.
Nothing here runs at import; the benchmarks are not part of the test suite.
"""
