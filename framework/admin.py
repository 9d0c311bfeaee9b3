"""KafkaAdmin: create, delete, list and describe topics, with kafka-python.

Minimal use::

    admin = KafkaAdmin(Settings.from_env())
    admin.create_topic("metrics")                    # 3 partitions, replication factor min(3, brokers)
    admin.create_topic("events", partitions=6, configs={"retention.ms": "86400000"})
    admin.list_topics()                              # ['events', 'metrics']
    admin.describe_topic("metrics").partitions       # [PartitionInfo(...), ...]

Contract: creating a topic that exists is not an error unless its partition
count differs; a replication factor larger than the number of brokers is
refused before anything is sent. The client connects lazily on first use and
can be injected (``client=``) for unit tests.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from framework.errors import KafkaUnavailableError, TopicError
from framework.log import get_logger
from framework.settings import Settings
from framework.topics import check_topic_name

log = get_logger("admin")

INTERNAL_PREFIX = "__"
UNKNOWN_TOPIC, LEADER_NOT_AVAILABLE = 3, 5   # Kafka error codes that can be metadata lag
METADATA_WAIT_S = 15.0


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: Mapping[str, str] = field(default_factory=dict)

    @property
    def partition_count(self) -> int:
        return len(self.partitions)

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].replicas) if self.partitions else 0


def reachable(bootstrap_servers: str, timeout: float = 5.0) -> bool:
    """True when at least one of ``bootstrap_servers`` accepts a TCP connection within ``timeout``."""
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False


PROBE_SECONDS = 3.0
_API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 0x5049_5045, 8) + b"pipeline"  # key, version, correlation id, client


def speaks_kafka(host: str, port: int, timeout: float = PROBE_SECONDS) -> str | None:
    """None when ``host:port`` answers a Kafka ApiVersions request; else what it did instead (one phrase).

    A Kafka broker answers any ApiVersions version with a response that
    carries the request's correlation id (an unsupported version gets an
    error code in the same frame), so a bounded read of 8 bytes tells a broker
    from an HTTP server, an SSH daemon or a program that never answers,
    in ``timeout`` seconds instead of the client's 30 s bootstrap timeout.
    Raises :class:`OSError` when the connection itself fails.
    """
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(_API_VERSIONS_V0)) + _API_VERSIONS_V0)
        head = b""
        try:
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
        except socket.timeout:
            return f"accepted the connection but sent no Kafka answer within {timeout:g} s"
    if len(head) < 8:
        return "accepted the connection, then closed it without a Kafka answer"
    size, correlation = struct.unpack(">ii", head)
    if correlation == 0x5049_5045 and 4 <= size < 1 << 24:
        return None
    shown = head.decode("ascii", "replace").strip()
    printable = "".join(c for c in shown if c.isprintable())
    return "answered, but not in the Kafka protocol" + (f" (it began with {printable!r})" if printable else "")


def not_kafka(bootstrap_servers: str, timeout: float = PROBE_SECONDS) -> str | None:
    """A sentence fragment naming the servers that accept connections without speaking Kafka; None if one speaks it.

    Servers that refuse the connection are left to the caller's usual "does not answer" error.
    """
    problems = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            problem = speaks_kafka(host, int(port), timeout)
        except (OSError, ValueError):
            continue
        if problem is None:
            return None
        problems.append(f"{server.strip()} {problem}")
    return "; ".join(problems) or None


def kafka_answers(bootstrap_servers: str, timeout: float = 5.0) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request within ``timeout``."""
    if not reachable(bootstrap_servers, timeout) or not_kafka(bootstrap_servers, min(timeout, PROBE_SECONDS)):
        return False
    try:
        admin = _admin_client(bootstrap_servers, timeout)
    except Exception:  # noqa: BLE001 - any failure here means "not answering yet"
        return False
    try:
        admin.list_topics()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


def _admin_client(bootstrap_servers: str, timeout: float) -> Any:
    from kafka import KafkaAdminClient

    ms = int(timeout * 1000)
    return KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="pipeline-admin",
                            request_timeout_ms=max(ms, 1000), bootstrap_timeout_ms=max(ms, 1000))


class KafkaAdmin:
    """Topic administration against the configured cluster (the local broker by default)."""

    def __init__(self, settings: Settings | None = None, *, bootstrap_servers: str | None = None,
                 client: Any = None, timeout: float = 30.0) -> None:
        self.settings = settings or Settings.from_env()
        self.bootstrap_servers = bootstrap_servers or self.settings.bootstrap_servers
        self.timeout = timeout
        self._client = client

    # ------------------------------------------------------------ connection
    @property
    def client(self) -> Any:
        """The kafka-python ``KafkaAdminClient``, connected on first use."""
        if self._client is None:
            if not reachable(self.bootstrap_servers, timeout=min(self.timeout, 5.0)):
                raise KafkaUnavailableError(
                    f"No Kafka broker accepts connections at {self.bootstrap_servers}; start the local broker "
                    "(`python cmd/broker_cmd.py start`) or fix PIPELINE_KAFKA_BOOTSTRAP_SERVERS.")
            impostor = not_kafka(self.bootstrap_servers, min(self.timeout, PROBE_SECONDS))
            if impostor:
                raise KafkaUnavailableError(
                    f"The port answers but is not Kafka: {impostor}; stop the program using that port or point "
                    "PIPELINE_KAFKA_BOOTSTRAP_SERVERS (or PIPELINE_BROKER_PORT for the local broker) at Kafka.")
            try:
                self._client = _admin_client(self.bootstrap_servers, self.timeout)
            except Exception as exc:  # noqa: BLE001 - NoBrokersAvailable, socket errors, ...: one sentence
                raise KafkaUnavailableError(
                    f"Kafka at {self.bootstrap_servers} does not answer ({type(exc).__name__}); start the local "
                    "broker (`python cmd/broker_cmd.py start`) or fix PIPELINE_KAFKA_BOOTSTRAP_SERVERS.") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "KafkaAdmin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- topics
    def broker_count(self) -> int:
        """Number of brokers in the cluster."""
        return len(self.client.describe_cluster()["brokers"])

    def list_topics(self, include_internal: bool = False) -> list[str]:
        """Sorted topic names (``__consumer_offsets`` and other internal ones left out by default)."""
        names = self.client.list_topics()
        return sorted(n for n in names if include_internal or not n.startswith(INTERNAL_PREFIX))

    def create_topic(self, name: str, partitions: int | None = None, replication_factor: int | None = None,
                     configs: Mapping[str, str] | None = None) -> bool:
        """Create ``name``; True if created, False if it already existed with the same partition count.

        Raises :class:`TopicError` when it exists with another partition count,
        when the replication factor exceeds the broker count, or when the
        broker refuses the topic.
        """
        from kafka.errors import TopicAlreadyExistsError

        partitions = self.settings.topic_partitions if partitions is None else partitions
        check_topic_name(name)
        if partitions < 1:
            raise TopicError(f"Topic {name!r} needs at least 1 partition, not {partitions}; ask for 1 or more "
                             f"(default {self.settings.topic_partitions}, PIPELINE_TOPIC_PARTITIONS).")
        if replication_factor is not None and replication_factor < 1:
            raise TopicError(f"Topic {name!r} needs a replication factor of at least 1, not {replication_factor}; "
                             "leave it out to use min(3, number of brokers).")
        brokers = self.broker_count()
        replication_factor = replication_factor or self.settings.topic_replication_factor or min(3, brokers)
        if replication_factor > brokers:
            raise TopicError(
                f"Replication factor {replication_factor} for topic {name!r} is larger than the {brokers} "
                f"broker(s) at {self.bootstrap_servers}; use at most {brokers}.")
        spec = {name: {"num_partitions": partitions, "replication_factor": replication_factor,
                       "configs": dict(configs or {})}}
        try:
            self.client.create_topics(spec, timeout_ms=int(self.timeout * 1000), wait_for_metadata=True)
        except TopicAlreadyExistsError:
            existing = self.describe_topic(name)
            if existing.partition_count != partitions:
                raise TopicError(
                    f"Topic {name!r} already exists with {existing.partition_count} partitions, "
                    f"not the {partitions} asked for; delete it first or ask for "
                    f"{existing.partition_count}.") from None
            return False
        except Exception as exc:  # a broker refusal: invalid config, policy, ...
            if isinstance(exc, TopicError):
                raise
            raise TopicError(f"Kafka refused to create topic {name!r}: {exc}") from None
        log.info("Created topic {} ({} partitions, replication factor {})", name, partitions, replication_factor)
        return True

    def ensure_topics(self, names: Iterable[str], partitions: int | None = None,
                      replication_factor: int | None = None) -> list[str]:
        """Create each missing topic of ``names``; return the ones that were created."""
        existing = set(self.list_topics(include_internal=True))
        created = []
        for name in names:
            if name not in existing and self.create_topic(name, partitions, replication_factor):
                created.append(name)
        return created

    def delete_topic(self, name: str) -> bool:
        """Delete ``name``; True if deleted, False if there was no such topic."""
        from kafka.errors import UnknownTopicOrPartitionError

        try:
            self.client.delete_topics([name], timeout_ms=int(self.timeout * 1000))
        except UnknownTopicOrPartitionError:
            return False
        log.info("Deleted topic {}", name)
        return True

    def describe_topic(self, name: str) -> TopicInfo:
        """Partitions (leader, replicas, in-sync replicas) and non-default configs of ``name``.

        Kafka spreads metadata to the brokers eventually: right after a topic is
        created, a broker other than the controller may still answer "unknown
        topic" or "no leader". Those answers are retried for a bounded time when
        the topic is listed (or leaderless); a topic that is not there at all
        fails at once.
        """
        t = self._describe_raw(name)
        parts = tuple(sorted(
            (PartitionInfo(p["partition_index"], p["leader_id"], tuple(p["replica_nodes"]), tuple(p["isr_nodes"]))
             for p in t["partitions"]), key=lambda p: p.partition))
        return TopicInfo(name=name, partitions=parts, configs=self._topic_configs(name))

    def _describe_raw(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + min(self.timeout, METADATA_WAIT_S)
        while True:
            topics = self.client.describe_topics([name])
            code = topics[0].get("error_code", 0) if topics else UNKNOWN_TOPIC
            leaderless = code == 0 and any(p["leader_id"] < 0 for p in topics[0]["partitions"])
            if code == 0 and not leaderless:
                return dict(topics[0])
            listed = code == UNKNOWN_TOPIC and name in self.list_topics(include_internal=True)
            if time.monotonic() < deadline and (leaderless or code == LEADER_NOT_AVAILABLE or listed):
                time.sleep(0.1)
                continue
            if code == 0:  # still leaderless after the wait: describe what there is
                return dict(topics[0])
            raise TopicError(f"Topic {name!r} does not exist; existing topics: "
                             f"{', '.join(self.list_topics()) or 'none'}.")

    def topic_id(self, name: str) -> str | None:
        """Kafka's id of topic ``name`` (KIP-516: a UUID given at creation, new when the topic is recreated).

        None when the broker gives none (before Kafka 2.8, or the all-zero id).
        Raises :class:`~framework.errors.TopicError` when the topic does not exist.
        """
        value = self._describe_raw(name).get("topic_id")
        text = str(value) if value is not None else ""
        return text if text and text.strip("0-") else None

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Latest offset (the next one to be written) of each partition of ``topic``."""
        from kafka import TopicPartition
        from kafka.admin import OffsetSpec

        info = self.describe_topic(topic)
        specs = {TopicPartition(topic, p.partition): OffsetSpec.LATEST for p in info.partitions}
        result = self.client.list_partition_offsets(specs)
        return {tp.partition: int(off.offset) for tp, off in result.items()}

    def _topic_configs(self, name: str) -> dict[str, str]:
        """Topic configs that differ from the broker defaults."""
        from kafka.admin import ConfigResource, ConfigResourceType

        result = self.client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries = result.get("topic", {}).get(name, {}) if isinstance(result, dict) else {}
        return {key: str(data.get("value") if isinstance(data, dict) else data) for key, data in entries.items()}

