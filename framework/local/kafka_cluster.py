"""A real Apache Kafka cluster on one machine: N KRaft nodes (default 3) on 127.0.0.1.

Each node is a :class:`~framework.local.kafka_broker.LocalKafkaBroker` (broker and
controller in one JVM) with its own ports and directory; together they form a
static quorum (``controller.quorum.voters=1@127.0.0.1:c1,2@127.0.0.1:c2,...``)
formatted with one cluster id. The state lives in one directory::

    <state_dir>/cluster.id      the KRaft cluster id, shared by every node
    <state_dir>/node-1/         a LocalKafkaBroker state dir (config, data/, logs/, broker.pid)
    <state_dir>/node-2/ ...

Topics default to replication factor ``min(3, N)`` and ``min.insync.replicas``
one less (2 for three nodes), so an ``acks=all`` producer keeps going while one
node is down. Minimal use::

    cluster = LocalKafkaCluster.from_settings(settings.replace(broker_count=3))
    cluster.start()                 # blocks until the cluster reports all N brokers
    cluster.bootstrap_servers       # '127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096'
    cluster.kill_node(2)            # SIGKILL node.id 2 (fault tests)
    cluster.start_node(2)           # and bring it back
    cluster.stop()

Contract: like the single broker, :meth:`start` never starts a second JVM over
a node's state directory, and :meth:`stop` only signals the PIDs recorded in
the nodes' PID files. Nodes are addressed by their Kafka ``node.id`` (1..N),
the id Kafka reports as a partition's leader. Nothing is started or written
before :meth:`start`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from framework.errors import BrokerError
from framework.local.kafka_broker import LocalKafkaBroker, _cluster_id
from framework.log import get_logger
from framework.settings import Settings

log = get_logger("cluster")


def replication_properties(nodes: int) -> dict[str, str]:
    """Broker defaults of an ``nodes``-node cluster: replication factor min(3, N), min ISR one less."""
    rf = min(3, nodes)
    min_isr = max(1, rf - 1)
    return {
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(min_isr),
    }


@dataclass
class LocalKafkaCluster:
    """N Apache Kafka nodes (KRaft combined mode, static quorum) bound to 127.0.0.1."""

    state_dir: Path
    ports: Sequence[int] = (9092, 9094, 9096)
    controller_ports: Sequence[int] = (9093, 9095, 9097)
    version: str = "4.1.1"
    cache_dir: Path = Path("~/.cache/pipeline-framework").expanduser()
    heap: str = "512m"
    start_timeout: float = 90.0
    #: server.properties entries for every node, over the replication defaults.
    extra_properties: dict[str, str] = field(default_factory=dict)
    nodes: list[LocalKafkaBroker] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.ports, self.controller_ports = tuple(self.ports), tuple(self.controller_ports)
        if not self.ports or len(self.ports) != len(self.controller_ports):
            raise BrokerError(f"A local Kafka cluster needs one client and one controller port per node; got "
                              f"client ports {list(self.ports)} and controller ports {list(self.controller_ports)}.")
        every = self.ports + self.controller_ports
        if len(set(every)) != len(every) or not all(0 < p < 65536 for p in every):
            raise BrokerError(f"The ports of a local Kafka cluster must be distinct TCP ports (1-65535); got client "
                              f"ports {list(self.ports)} and controller ports {list(self.controller_ports)}. "
                              "Node i uses PIPELINE_BROKER_PORT+2i and PIPELINE_BROKER_CONTROLLER_PORT+2i, so set "
                              "those two at least 2*PIPELINE_BROKER_COUNT apart.")
        props = {**replication_properties(len(self.ports)), **self.extra_properties}
        self.nodes = [
            LocalKafkaBroker(state_dir=self.state_dir / f"node-{i}", port=port, controller_port=cport,
                             version=self.version, cache_dir=Path(self.cache_dir), heap=self.heap,
                             start_timeout=self.start_timeout, node_id=i, voters=self.voters,
                             extra_properties=dict(props))
            for i, (port, cport) in enumerate(zip(self.ports, self.controller_ports, strict=True), start=1)]

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "LocalKafkaCluster":
        """The cluster the settings describe: PIPELINE_BROKER_COUNT nodes, state in ``<state_dir>/kafka-cluster``."""
        pairs = settings.local_broker_ports
        values: dict[str, Any] = dict(state_dir=Path(settings.state_dir) / "kafka-cluster", ports=[p for p, _ in pairs],
                      controller_ports=[c for _, c in pairs], version=settings.kafka_version,
                      cache_dir=Path(settings.cache_dir), heap=settings.broker_heap,
                      start_timeout=settings.broker_start_timeout)
        values.update(overrides)
        return cls(**values)

    # ------------------------------------------------------------ addresses
    @property
    def voters(self) -> str:
        """``controller.quorum.voters`` of every node."""
        return ",".join(f"{i}@127.0.0.1:{c}" for i, c in enumerate(self.controller_ports, start=1))

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"

    def node(self, node_id: int) -> LocalKafkaBroker:
        """The node with Kafka ``node.id`` ``node_id`` (1..N)."""
        if not isinstance(node_id, int) or not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"No node {node_id!r} in the local Kafka cluster; node ids are "
                              f"{', '.join(str(n.node_id) for n in self.nodes)}.")
        return self.nodes[node_id - 1]

    # ------------------------------------------------------------- lifecycle
    def start(self) -> "LocalKafkaCluster":
        """Start every node that is not running and wait until the cluster reports all N brokers.

        All missing nodes are launched first, then waited for: a node of a
        multi-voter quorum answers only once a majority of voters runs.
        Raises :class:`BrokerError` (naming the node and the end of its log)
        when a node exits or the cluster is not complete within
        ``start_timeout`` seconds; the nodes this call launched are stopped again.
        """
        missing = [n for n in self.nodes if not n.running_pid()]
        if not missing:
            log.info("Local Kafka cluster already running at {}", self.bootstrap_servers)
            return self
        cluster_id = self._cluster_id()
        log.info("Starting {} of {} Kafka nodes (cluster id {}) at {}", len(missing), len(self.nodes),
                 cluster_id, self.bootstrap_servers)
        for node in missing:
            node.cluster_id = cluster_id
        try:
            _in_parallel(missing, lambda node: node.start(wait=False))  # formatting and JVM start overlap
            for node in missing:
                node.wait_ready()
            self.wait_for_brokers(len(self.nodes))
        except BaseException:
            _in_parallel(missing, lambda node: node.stop(timeout=10))
            raise
        log.info("Local Kafka cluster ready: {} brokers at {}", len(self.nodes), self.bootstrap_servers)
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every running node (SIGTERM to all at once, bounded wait, then SIGKILL).

        Returns True if any node was stopped. All nodes get the signal
        together, so none waits for a quorum that is already gone.
        """
        running = [n for n in self.nodes if n.running_pid()]
        _in_parallel(running, lambda node: node.stop(timeout=timeout))
        if running:
            log.info("Local Kafka cluster stopped")
        return bool(running)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` (1..N), as a crash would; for fault tests."""
        node = self.node(node_id)
        log.info("Killing Kafka node {} (pid {})", node_id, node.running_pid())
        node.kill()

    def start_node(self, node_id: int) -> None:
        """Start node ``node_id`` (1..N) again and wait until it answers."""
        node = self.node(node_id)
        node.cluster_id = self._cluster_id()
        node.start()

    def wait_for_brokers(self, count: int, timeout: float | None = None) -> None:
        """Block until the cluster's metadata lists ``count`` live brokers; :class:`BrokerError` after ``timeout``."""
        from framework.admin import KafkaAdmin  # local: admin imports kafka-python

        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            try:
                with KafkaAdmin(Settings(), bootstrap_servers=self.bootstrap_servers, timeout=5.0) as admin:
                    seen = admin.broker_count()
            except Exception:  # noqa: BLE001 - not answering yet counts as 0 brokers
                seen = 0
            if seen == count:
                return
            time.sleep(0.5)
        raise BrokerError(f"The local Kafka cluster at {self.bootstrap_servers} reported {seen} broker(s), "
                          f"not {count}, within {timeout:.0f}s; see the logs under {self.state_dir}/node-*/logs.")

    def running_pid(self) -> int | None:
        """PID of the first running node, or None when no node runs (as :meth:`LocalKafkaBroker.running_pid`)."""
        return next((pid for pid in (n.running_pid() for n in self.nodes) if pid), None)

    def status(self) -> dict[str, Any]:
        """Running or not (all nodes), where, which version, and each node's own status."""
        nodes = [{"node_id": n.node_id, **n.status()} for n in self.nodes]
        return {"running": all(n["running"] for n in nodes), "bootstrap_servers": self.bootstrap_servers,
                "version": self.version, "cluster_id": self._read_cluster_id(), "state_dir": str(self.state_dir),
                "nodes": nodes}

    def __enter__(self) -> "LocalKafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- internals
    def _read_cluster_id(self) -> str | None:
        try:
            return self.cluster_id_file.read_text().strip() or None
        except OSError:
            return None

    def _cluster_id(self) -> str:
        """The cluster's id, created (and kept in ``cluster.id``) on first start."""
        cid = self._read_cluster_id()
        if not cid:
            cid = _cluster_id()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.cluster_id_file.write_text(cid + "\n")
        return cid


def _in_parallel(nodes: Sequence[LocalKafkaBroker], action: Callable[[LocalKafkaBroker], object]) -> None:
    """Run ``action`` on every node in its own thread; wait for all, then raise the first error."""
    errors: list[BaseException] = []

    def run(node: LocalKafkaBroker) -> None:
        try:
            action(node)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after every thread finished
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), name=f"kafka-node-{n.node_id}") for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def local_kafka(settings: Settings) -> LocalKafkaBroker | LocalKafkaCluster:
    """The local Kafka the settings describe: one broker, or a cluster when PIPELINE_BROKER_COUNT > 1.

    Both have ``start()``, ``stop()``, ``running_pid()``, ``status()`` and
    ``bootstrap_servers``, so a caller can manage either the same way.
    """
    if settings.broker_count > 1:
        return LocalKafkaCluster.from_settings(settings)
    return LocalKafkaBroker.from_settings(settings)
