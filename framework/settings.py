"""One typed, frozen settings object, loaded from ``PIPELINE_*`` environment variables.

Every setting has a default that runs on one machine with nothing else running
(the *embedded default*): an empty ``PIPELINE_KAFKA_BOOTSTRAP_SERVERS`` means
"start and use the local Apache Kafka broker", ``local[*]`` means a local Spark.
Point the same code at a cluster by setting the variables, for example::

    PIPELINE_KAFKA_BOOTSTRAP_SERVERS=kafka1:9092,kafka2:9092
    PIPELINE_SPARK_MASTER=spark://spark-master:7077

Contract: :meth:`Settings.from_env` checks every variable before anything
connects anywhere. An unknown ``PIPELINE_*`` variable or a malformed value
raises :class:`~framework.errors.SettingsError` with one sentence naming the
variable, the value and what is expected.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from framework.errors import SettingsError

PREFIX = "PIPELINE_"

_MEMORY = re.compile(r"^\d+[kKmMgGtT]?$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^\s]+|yarn|k8s://[^\s]+)$")
_COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
PRODUCER_CLIENTS = ("kafka-python", "confluent")
_OFFSETS = ("earliest", "latest")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_LOG_LEVELS = LOG_LEVELS
#: bounds every numeric setting meets, whatever its own check: Kafka and Spark read them as 32-bit ints,
#: and timeouts and sleeps overflow past about 292 years
MAX_INT = 2**31 - 1
MAX_SECONDS = 86400.0
MAX_DELAY_SECONDS = 3600.0


def _setting(default: Any, help: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """Declare a setting: its default, a one-line description, an optional check.

    ``check`` returns ``None`` when the value is fine, or the expectation
    ("a number of megabytes like 512m") when it is not.
    """
    return field(default=default, metadata={"help": help, "check": check})


def _choice(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(choices)
    return check


def _positive(value: Any) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "a number not below 0"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"a number from {low:g} to {high:g}"
    return check


def _seconds(value: Any) -> str | None:
    return None if 0 < value <= MAX_SECONDS else f"a number of seconds above 0 and at most {MAX_SECONDS:g} (a day)"


def _port(value: Any) -> str | None:
    return None if 0 < value < 65536 else "a TCP port between 1 and 65535"


def _memory(value: Any) -> str | None:
    return None if _MEMORY.match(value) else "a JVM memory size like 512m or 2g"


def _master(value: Any) -> str | None:
    return None if _MASTER.match(value) else "a Spark master URL like local[*], local[2] or spark://host:7077"


def _broker_count(value: Any) -> str | None:
    return None if 1 <= value <= 9 else "a number of local brokers from 1 to 9"


def _postgres_url(value: Any) -> str | None:
    if value == "" or re.match(r"^postgres(ql)?://[^\s/]+(:\d+)?/[^\s]*$", value):
        return None
    return "empty (start the local PostgreSQL) or a URL like postgresql://user:password@host:5432/database"


#: warehouse URL schemes of Hadoop filesystems the Iceberg catalog writes to (see docs/iceberg.md)
WAREHOUSE_SCHEMES = ("file", "hdfs", "viewfs", "s3a", "abfs", "abfss", "gs", "ofs", "o3fs")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _warehouse(value: Any) -> str | None:
    if value == "" or value.startswith("/"):
        return None
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", value)
    if match and match.group(1).lower() in WAREHOUSE_SCHEMES:
        return None
    return ("empty (OUTPUT_DIR/warehouse), an absolute path or a URL of a Hadoop filesystem with one of the "
            "schemes " + ", ".join(f"{s}://" for s in WAREHOUSE_SCHEMES) + " (S3 is s3a://)")


def _trino_url(value: Any) -> str | None:
    if value == "" or re.match(r"^https?://[^\s/:]+(:\d{1,5})?/?$", value):
        return None
    return "empty (start the local Trino) or a URL like http://trino:8080"


def _identifier(value: Any) -> str | None:
    return None if _IDENTIFIER.match(value) else "a SQL identifier (letters, digits, _; not starting with a digit)"


def _bootstrap(value: Any) -> str | None:
    if value == "" or all(_HOSTPORT.match(part.strip()) for part in value.split(",")):
        return None
    return "empty (start the local broker) or a comma-separated list of host:port"


@dataclass(frozen=True)
class Settings:
    """All settings of the framework; field ``x_y`` is read from ``PIPELINE_X_Y``."""

    # Kafka
    kafka_bootstrap_servers: str = _setting(
        "", "Kafka bootstrap servers; empty starts and uses the local broker", _bootstrap)
    kafka_version: str = _setting("4.1.1", "Apache Kafka release the local broker runs (resolved from Maven Central)")
    broker_port: int = _setting(9092, "client port of the local broker", _port)
    broker_controller_port: int = _setting(9093, "KRaft controller port of the local broker", _port)
    broker_heap: str = _setting("512m", "JVM heap of the local broker", _memory)
    broker_start_timeout: float = _setting(90.0, "seconds to wait for the local broker to answer", _seconds)
    broker_count: int = _setting(
        1, "local Kafka brokers to run: 1, or e.g. 3 for a KRaft cluster on one machine (node i, from 0, "
        "uses ports BROKER_PORT+2i and BROKER_CONTROLLER_PORT+2i)", _broker_count)
    topic_partitions: int = _setting(3, "partitions of a topic created without an explicit count", _positive)
    topic_replication_factor: int = _setting(
        0, "replication factor of a topic created without one; 0 = min(3, number of brokers)", _non_negative)
    # Spark
    spark_master: str = _setting("local[*]", "Spark master URL", _master)
    spark_executor_memory: str = _setting("512m", "memory of each Spark executor", _memory)
    spark_executor_cores: int = _setting(1, "cores of each Spark executor", _positive)
    spark_driver_memory: str = _setting("1g", "memory of the Spark driver", _memory)
    spark_ui: bool = _setting(False, "serve the Spark web UI")
    spark_shuffle_partitions: int = _setting(4, "spark.sql.shuffle.partitions", _positive)
    spark_driver_host: str = _setting(
        "", "spark.driver.host executors connect back to (e.g. the consumer's service name); empty lets Spark "
        "choose, local masters always use 127.0.0.1")
    # Consumer
    max_offsets_per_trigger: int = _setting(1000, "records a streaming micro-batch reads at most (0: no limit)",
                                            _non_negative)
    trigger_seconds: float = _setting(10.0, "seconds between micro-batches in continuous mode", _seconds)
    starting_offsets: str = _setting("earliest", "where a new streaming query starts", _choice(*_OFFSETS))
    # Producer
    producer_batch_size: int = _setting(65536, "Kafka producer batch.size in bytes", _positive)
    producer_linger_ms: int = _setting(20, "Kafka producer linger.ms", _non_negative)
    producer_compression: str = _setting("none", "Kafka producer compression", _choice(*_COMPRESSION))
    producer_client: str = _setting(
        "kafka-python", "Kafka client of ProducerABC: kafka-python, or confluent (librdkafka, same exactly-once "
        "contract, 2 to 3 times faster sends)", _choice(*PRODUCER_CLIENTS))
    simulation_process: bool = _setting(
        False, "true: SimulationProducerABC runs its cadCAD model in a child process beside the publisher (two "
        "cores: about 1.5 times the messages/s; the model's module is imported again there, see "
        "docs/simulation.md); false keeps both in one process. Spark tasks always use one")
    producer_retries: int = _setting(5, "attempts to reconnect to the API or broker before giving up", _non_negative)
    producer_retry_backoff: float = _setting(1.0, "seconds before the first retry (doubles each time)", _seconds)
    # Streaming API
    # PostgreSQL (sinks, dashboard, Iceberg catalog)
    postgres_url: str = _setting(
        "", "PostgreSQL to use, postgresql://user:password@host:port/database; empty means start the local one",
        _postgres_url)
    postgres_port: int = _setting(5433, "port of the local PostgreSQL server (127.0.0.1)", _port)
    postgres_start_timeout: float = _setting(60.0, "seconds to wait for the local PostgreSQL to answer", _positive)
    dashboard_host: str = _setting("127.0.0.1", "address the dashboard binds to")
    dashboard_port: int = _setting(8050, "port of the dashboard (pipeline dashboard)", _port)

    # Iceberg tables (IcebergWriter, query, tables)
    iceberg_warehouse: str = _setting(
        "", "where Iceberg tables keep their files: empty means OUTPUT_DIR/warehouse, or an absolute path, "
        "hdfs://..., s3a://bucket/path", _warehouse)
    iceberg_namespace: str = _setting("pipeline", "Iceberg namespace (database) of the consumers' tables",
                                      _identifier)
    iceberg_catalog: str = _setting("iceberg", "name of the Iceberg JDBC catalog (in Spark, Trino and pyiceberg)",
                                    _identifier)
    iceberg_s3_endpoint: str = _setting(
        "", "S3 endpoint for an s3a:// warehouse (e.g. http://127.0.0.1:9000 for MinIO); empty means AWS; "
        "credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    iceberg_compact_every: int = _setting(
        0, "IcebergWriter rewrites small data files every N batches of a table; 0 = never (use `tables compact`)",
        _non_negative)

    # Trino (pipeline trino, query --engine trino)
    trino_url: str = _setting(
        "", "Trino to query, http://host:port; empty means start (or reuse) the local Trino", _trino_url)
    trino_version: str = _setting("476", "Trino release the local server runs (server and Iceberg plugin from "
                                  "Maven Central)")
    trino_port: int = _setting(8080, "HTTP port of the local Trino (127.0.0.1)", _port)
    trino_heap: str = _setting("2g", "JVM heap (-Xmx) of the local Trino", _memory)
    trino_java_home: str = _setting(
        "", "JDK the local Trino runs on (Java 24.0.1 or newer); empty means the newest such JDK in JAVA_HOME, "
        "/usr/lib/jvm or /opt")
    trino_start_timeout: float = _setting(180.0, "seconds to wait for the local Trino to answer", _seconds)

    api_host: str = _setting("127.0.0.1", "address the streaming API binds to")
    api_port: int = _setting(5000, "port of the streaming API", _port)
    api_base_url: str = _setting("", "base URL producers stream from; empty means http://API_HOST:API_PORT")
    api_delay: float = _setting(0.1, "default seconds between streamed records",
                                _between(0, MAX_DELAY_SECONDS))
    api_time_field: str = _setting(
        "time", "record member the API orders a stream by (ISO-8601 or seconds since 1970); empty: file order")
    # Paths
    data_dir: Path = _setting(Path("data_source"), "directory of the JSON files the API replays")
    output_dir: Path = _setting(Path("output"), "directory of the Parquet tables")
    checkpoint_dir: Path | None = _setting(None, "Spark checkpoints; empty means OUTPUT_DIR/_checkpoints")
    state_dir: Path = _setting(Path(".pipeline"), "local broker data, PID files and logs")
    cache_dir: Path = _setting(
        Path(os.path.expanduser("~/.cache/pipeline-framework")),
        "downloaded jars (Kafka broker, Spark Kafka connector), kept across runs")
    log_level: str = _setting("INFO", "log level of the commands", _choice(*_LOG_LEVELS))

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every ``PIPELINE_*`` variable of ``environ`` (default ``os.environ``).

        ``overrides`` (field name -> typed value) win over the environment.
        Raises :class:`SettingsError` for an unknown variable or a bad value.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for var, raw in environ.items():
            if not var.startswith(PREFIX):
                continue
            name = var[len(PREFIX):].lower()
            if name not in fields:
                known = [PREFIX + n.upper() for n in fields]
                close = difflib.get_close_matches(var, known, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise SettingsError(
                    f"Unknown setting {var}.{hint} `python cmd/admin_cmd.py settings` lists all "
                    f"{len(known)} {PREFIX}* settings.")
            values[name] = _convert(var, raw, fields[name])
        for name, value in overrides.items():
            if name not in fields:
                raise SettingsError(f"Unknown setting override {name!r}; known: {', '.join(fields)}.")
            values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Run every field's check; raise :class:`SettingsError` on the first failure."""
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            value = getattr(self, f.name)
            problem = _numeric_bounds(value) or (check(value) if check else None)
            if problem:
                raise SettingsError(
                    f"{env_name(f.name)}={value!s} is not valid; expected {problem}.")

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    # ----------------------------------------------------------------- derived
    @property
    def uses_local_broker(self) -> bool:
        """True when no external Kafka cluster is configured."""
        return self.kafka_bootstrap_servers == ""

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap servers to connect to (the local broker(s) when none is set)."""
        return self.kafka_bootstrap_servers or ",".join(f"127.0.0.1:{port}" for port, _ in self.local_broker_ports)

    @property
    def local_broker_ports(self) -> list[tuple[int, int]]:
        """(client port, controller port) of each local broker: node i uses BROKER_PORT+2i, CONTROLLER_PORT+2i."""
        return [(self.broker_port + 2 * i, self.broker_controller_port + 2 * i) for i in range(self.broker_count)]

    @property
    def uses_local_postgres(self) -> bool:
        """True when no external PostgreSQL server is configured."""
        return self.postgres_url == ""

    @property
    def uses_local_trino(self) -> bool:
        """True when no running Trino is configured (``query --engine trino`` starts the local one)."""
        return self.trino_url == ""

    @property
    def warehouse_url(self) -> str:
        """The Iceberg warehouse as a URL (``file:///abs/output/warehouse`` by default)."""
        value = self.iceberg_warehouse
        if value == "" or value.startswith("/"):
            path = Path(value) if value else Path(self.output_dir) / "warehouse"
            return path.expanduser().resolve().as_uri()
        return value.rstrip("/")

    @property
    def api_url(self) -> str:
        """Base URL of the streaming API, without a trailing slash."""
        return (self.api_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def checkpoint_root(self) -> Path:
        """Directory of the Spark checkpoints: ``checkpoint_dir``, or ``OUTPUT_DIR/_checkpoints`` when unset (empty).

        ``.`` is the current directory, like any other path.
        """
        return self.output_dir / "_checkpoints" if self.checkpoint_dir is None else Path(self.checkpoint_dir)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) of every setting, for ``admin_cmd.py settings``."""
        return [(env_name(f.name), "" if f.default is None else str(f.default), f.metadata["help"])
                for f in dataclasses.fields(cls)]


def env_name(field_name: str) -> str:
    """The environment variable of a settings field."""
    return PREFIX + field_name.upper()


def _numeric_bounds(value: Any) -> str | None:
    """The expectation every number meets: finite, and an int within Kafka's and Java's 32 bits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"a number of at most {MAX_INT}"
    return None


def _convert(var: str, raw: str, f: dataclasses.Field[Any]) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    text = raw.strip()
    try:
        if kind == "Path | None":  # empty means "not set"
            return Path(os.path.expanduser(text)) if text else None
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "Path":
            return Path(os.path.expanduser(text))
        return text
    except ValueError:
        expected = {"int": "a whole number", "float": "a finite number",
                    "bool": "true or false"}.get(kind, kind)
        raise SettingsError(f"{var}={raw!r} is not valid; expected {expected}.") from None


def _shown_default(value: Any) -> str:
    """A default as a user would type it: empty, ``~`` for the home directory, lower-case booleans."""
    if value is None or value == "" or value == Path(""):
        return "(empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Path):
        home = Path(os.path.expanduser("~"))
        if value == home or home in value.parents:
            return "~/" + value.relative_to(home).as_posix()
    return str(value)


def settings_markdown() -> str:
    """The text of ``docs/settings.md``: every setting, its default and its description.

    Regenerate the page with ``python cmd/admin_cmd.py settings --markdown > docs/settings.md``;
    a unit test fails when the page and this text differ. The text does not depend on the
    environment or the machine (the home directory is shown as ``~``).
    """
    def cell(value: Any) -> str:
        shown = _shown_default(value)
        return shown if shown == "(empty)" else f"`{shown}`"

    rows = [f"| `{env_name(f.name)}` | {cell(f.default)} | {f.metadata['help']} |"
            for f in dataclasses.fields(Settings)]
    return "\n".join([
        "# Settings",
        "",
        "<!-- Generated from framework/settings.py by "
        "`python cmd/admin_cmd.py settings --markdown > docs/settings.md`; do not edit by hand. -->",
        "",
        f"Every setting is an environment variable with the prefix `{PREFIX}`, read once by",
        "`Settings.from_env()` and checked before anything connects: an unknown `PIPELINE_*` variable",
        "(with a \"did you mean\") or a malformed value stops every command with one sentence naming it.",
        "The defaults run everything on one machine (the embedded default, see",
        "[local services](local-services.md)). `python cmd/admin_cmd.py settings` prints every setting",
        "with its current value and marks those set in the environment.",
        "",
        "In code: `Settings.from_env()`, `Settings.from_env(environ, **overrides)` and",
        "`settings.replace(field=value)`; field `x_y` is variable `PIPELINE_X_Y`.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        *rows,
        "",
    ])
