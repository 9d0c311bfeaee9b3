"""The reference producer: Kafka's own ``kafka-producer-perf-test`` (``org.apache.kafka.tools.ProducerPerformance``).

The tool comes from the same Apache Kafka release as the broker
(``Settings.kafka_version``), resolved from Maven Central with
:func:`framework.local.jars.resolve` like the broker itself and cached. It is run as::

    java -cp <kafka-tools jars> org.apache.kafka.tools.ProducerPerformance --topic T \\
        --num-records N --record-size S --throughput -1 \\
        --producer-props bootstrap.servers=... acks=all batch.size=... linger.ms=...

and its last line is the summary this module parses::

    500000 records sent, 84217.6 records/sec (4.50 MB/sec), 829.24 ms avg latency,
    1786.00 ms max latency, 998 ms 50th, 1327 ms 95th, 1363 ms 99th, 1385 ms 99.9th.

(one line in reality). The tool's window runs from its first send to the end
of ``close()``; its latency is send-to-callback; its MB is 2**20 bytes of values.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from bench.errors import ReferenceToolError
from framework.local.jars import java_executable, resolve
from framework.local.kafka_broker import LOG4J_VERSION
from framework.log import get_logger

log = get_logger("bench")

PERF_CLASS = "org.apache.kafka.tools.ProducerPerformance"
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
SUMMARY = re.compile(
    rf"^\s*(\d+) records sent, {_NUMBER} records/sec \({_NUMBER} MB/sec\), {_NUMBER} ms avg latency, "
    rf"{_NUMBER} ms max latency, {_NUMBER} ms 50th, {_NUMBER} ms 95th, {_NUMBER} ms 99th, "
    rf"{_NUMBER} ms 99\.9th\.?\s*$")


@dataclass(frozen=True)
class PerfResult:
    """The summary line of one ProducerPerformance run."""

    records: int
    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    max_latency_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def parse_summary(output: str) -> PerfResult:
    """The last summary line of ProducerPerformance's ``output``.

    Raises :class:`ReferenceToolError` quoting the end of the output when there is none
    (the interim lines, without percentiles, do not count).
    """
    for line in reversed(output.strip().splitlines()):
        match = SUMMARY.match(line)
        if match:
            g = match.groups()
            return PerfResult(records=int(g[0]), records_per_s=float(g[1]), mb_per_s=float(g[2]),
                              avg_latency_ms=float(g[3]), max_latency_ms=float(g[4]), p50_ms=float(g[5]),
                              p95_ms=float(g[6]), p99_ms=float(g[7]), p999_ms=float(g[8]))
    tail = "\n".join(output.strip().splitlines()[-8:]) or "(no output)"
    raise ReferenceToolError(f"ProducerPerformance printed no summary line; the end of its output was:\n{tail}")


def tools_coordinates(version: str) -> list[str]:
    """Maven coordinates of Kafka's command-line tools and a logging backend for them."""
    return [f"org.apache.kafka:kafka-tools:{version}",
            f"org.apache.logging.log4j:log4j-slf4j2-impl:{LOG4J_VERSION}"]


def tools_classpath(version: str, cache_dir: Path) -> str:
    """The classpath of Kafka's tools at ``version`` (resolved and cached on first use)."""
    jars = resolve(f"kafka-tools-{version}", tools_coordinates(version), Path(cache_dir))
    return os.pathsep.join(str(j) for j in jars)


def producer_props(bootstrap_servers: str, acks: str, batch_size: int, linger_ms: int, compression: str,
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--producer-props`` for a configuration (idempotence follows acks, as in the framework)."""
    props = {"bootstrap.servers": bootstrap_servers, "acks": acks, "batch.size": str(batch_size),
             "linger.ms": str(linger_ms), "compression.type": compression,
             "enable.idempotence": "true" if acks in ("all", "-1") else "false"}
    props.update(extra or {})
    return props


def perf_command(classpath: str, topic: str, records: int, props: Mapping[str, str], *,
                 record_size: int | None = None, payload_file: Path | None = None, throughput: int = -1,
                 heap: str = "512m") -> list[str]:
    """The java command line of one ProducerPerformance run (exactly one of ``record_size``/``payload_file``)."""
    if (record_size is None) == (payload_file is None):
        raise ReferenceToolError("ProducerPerformance needs exactly one of a record size or a payload file.")
    payload = ["--record-size", str(record_size)] if record_size is not None else ["--payload-file", str(payload_file)]
    return [java_executable(), f"-Xmx{heap}", "-Djava.awt.headless=true", "-cp", classpath, PERF_CLASS,
            "--topic", topic, "--num-records", str(records), *payload, "--throughput", str(throughput),
            "--producer-props", *(f"{k}={v}" for k, v in props.items())]


def run_producer_performance(classpath: str, topic: str, records: int, props: Mapping[str, str], *,
                             record_size: int | None = None, payload_file: Path | None = None,
                             throughput: int = -1, timeout: float = 600.0) -> PerfResult:
    """Run the tool to the end (blocks) and return its summary; :class:`ReferenceToolError` on failure."""
    cmd = perf_command(classpath, topic, records, props, record_size=record_size, payload_file=payload_file,
                       throughput=throughput)
    log.debug("Running {}", " ".join(cmd[:2] + cmd[5:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ReferenceToolError(f"ProducerPerformance did not finish {records} records to {topic!r} within "
                                 f"{timeout:.0f} s; is the broker overloaded?") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise ReferenceToolError(f"ProducerPerformance exited with code {proc.returncode}:\n{tail}")
    return parse_summary(proc.stdout)
