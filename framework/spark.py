"""The one place a SparkSession is built, from :class:`~framework.settings.Settings`.

The session reads Kafka through Spark's own connector,
``org.apache.spark:spark-sql-kafka-0-10_2.13`` at the version of the installed
pyspark. It is resolved with its dependencies from Maven Central on first use,
by the same cached resolver as the Kafka broker (:mod:`framework.local.jars`, Ivy),
and handed to Spark as ``spark.jars``, leaving out the jars pyspark already
ships. PostgreSQL's JDBC driver (for the JDBC sink) is added the same way,
next to the connector. Compared with ``spark.jars.packages`` this keeps Spark's start quiet and
quick (no resolution on every start) and works offline after the first run.

Minimal use::

    spark = build_spark_session(Settings.from_env(), app_name="my-job")
    df = (spark.read.format("kafka")
          .option("kafka.bootstrap.servers", settings.bootstrap_servers)
          .option("subscribe", "metrics").load())

Contract: ``spark.master``, executor memory and cores, the connector, the UI
switch and quiet logs all come from here; callers add only job-specific conf.
A missing Java raises :class:`~framework.errors.JavaNotFoundError` before Spark
is started.
"""
from __future__ import annotations

import os
import re
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from framework.errors import SparkUnavailableError
from framework.local.jars import java_executable, resolve
from framework.log import get_logger
from framework.settings import Settings
from framework.signals import preserved_handlers

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = get_logger("spark")

SCALA_BINARY = "2.13"
MASTER_PROBE_SECONDS = 5.0
#: Apache Iceberg's Spark runtime (IcebergWriter, `tables`); 1.10.x is the line built for Spark 4.0
ICEBERG_RUNTIME = f"org.apache.iceberg:iceberg-spark-runtime-4.0_{SCALA_BINARY}:1.10.0"
#: PostgreSQL's JDBC driver (the JDBC sink; the Iceberg JDBC catalog lives in PostgreSQL); a plain jar
POSTGRES_JDBC = "org.postgresql:postgresql:42.7.8"
#: S3A filesystem for an s3a:// warehouse: hadoop-aws at the Hadoop version pyspark 4.0.0 ships (3.4.1)
HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.4.1"
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def kafka_connector_package() -> str:
    """Maven coordinate of Spark's Kafka connector matching the installed pyspark."""
    import pyspark

    return f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{pyspark.__version__}"


def _artifact(jar_name: str) -> str:
    """``kafka-clients`` of ``kafka-clients-3.9.0.jar`` or ``org.apache.kafka__kafka-clients-3.9.0.jar``."""
    base = jar_name.split("__", 1)[-1]
    match = re.match(r"^(.*)-\d+\.[\w.\-]*\.jar$", base)  # the version is the last "-<digits>.<...>"
    return match.group(1) if match else base


def kafka_connector_jars(cache_dir: Path) -> list[Path]:
    """Jars of Spark's Kafka connector and its dependencies that pyspark does not ship itself.

    Resolved from Maven Central on first use (may block), then read from the cache.
    """
    import pyspark

    jars = resolve(f"spark-kafka-{pyspark.__version__}", [kafka_connector_package()], Path(cache_dir))
    bundled = {_artifact(name) for name in os.listdir(Path(pyspark.__file__).parent / "jars")}
    return [j for j in jars if _artifact(j.name) not in bundled]


def jdbc_driver_jars(cache_dir: Path) -> list[Path]:
    """PostgreSQL's JDBC driver jar (the JDBC sink and Iceberg's JDBC catalog), resolved and cached on first use."""
    version = POSTGRES_JDBC.rsplit(":", 1)[1]
    jars = resolve(f"postgresql-jdbc-{version}", [POSTGRES_JDBC], Path(cache_dir))
    return [j for j in jars if "postgresql" in j.name]  # the driver needs nothing else at run time


def iceberg_jars(settings: Settings) -> list[Path]:
    """Iceberg's Spark runtime, plus hadoop-aws for an s3a:// warehouse.

    Resolved from Maven Central on first use (may block), then read from the cache.
    """
    cache = Path(settings.cache_dir).expanduser().resolve()
    jars = resolve("iceberg-spark-1.10.0", [ICEBERG_RUNTIME], cache)
    if settings.warehouse_url.startswith("s3a://"):
        bundled = {_artifact(name) for name in os.listdir(Path(str(__import__("pyspark").__file__)).parent / "jars")}
        jars += [j for j in resolve("hadoop-aws-3.4.1", [HADOOP_AWS], cache) if _artifact(j.name) not in bundled]
    return jars


def spark_conf(settings: Settings, extra: Mapping[str, str] | None = None,
               kafka_connector: bool = True) -> dict[str, str]:
    """Every Spark configuration value the builder sets (useful to inspect or test).

    May block on first use while the Kafka connector and Iceberg's runtime are resolved;
    ``kafka_connector=False`` leaves every downloaded jar out (a session for static frames
    only: no Maven download, no network).
    """
    cache = Path(settings.cache_dir).expanduser().resolve()
    log4j = _log4j_file(cache)
    # -XX:-DontCompileHugeMethods: Spark's generated code for a stage with many expressions (the parse
    # contract's checks, framework/consumer/parsing.py) exceeds the 8,000-byte method size above which
    # HotSpot never JIT-compiles; interpreted, that stage ran at about half speed (Spark's own
    # documentation of spark.sql.codegen.hugeMethodLimit names the same JVM limit).
    jvm = f"-Dlog4j2.configurationFile=file:{log4j} -XX:-DontCompileHugeMethods"
    conf = {
        "spark.master": settings.spark_master,
        "spark.executor.memory": settings.spark_executor_memory,
        "spark.executor.cores": str(settings.spark_executor_cores),
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
        "spark.driver.extraJavaOptions": jvm,
        "spark.executor.extraJavaOptions": jvm,
        # PySpark's DataFrame query context: with it on, every pyspark.sql.functions call makes five more Py4J
        # round trips to record its Python call site (pyspark/errors/utils.py, _with_origin). The consumer's
        # parse plan is about 500 such calls, so this cut its build from about 0.2 s. What is lost: the Python
        # line in the message of an ANSI-mode runtime error (a transform()'s own expressions included);
        # extra_conf of build_spark_session turns it back on.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # The streaming checkpoint (the offset and commit logs every micro-batch writes) through Hadoop's
        # FileSystem API instead of Spark's default FileContext one: on a local directory, which is where
        # settings.checkpoint_dir is, each log write took about 35 ms (walCommit and commitOffsets of a
        # query's progress) and takes about 10 ms this way. Both managers write a temporary file and rename
        # it; on the local file system both check that the target is absent and then rename (the FileContext
        # path goes through AbstractFileSystem.renameInternal, whose default "deals with overwrite in a
        # non-atomic way", Hadoop's words), so no guarantee is lost. Spark itself falls back to this manager
        # where FileContext is unavailable (CheckpointFileManager.create).
        "spark.sql.streaming.checkpointFileManagerClass":
            "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager",
    }
    if kafka_connector:
        jars = kafka_connector_jars(cache) + iceberg_jars(settings) + jdbc_driver_jars(cache)
        conf["spark.jars"] = ",".join(str(j) for j in jars)
        conf["spark.sql.extensions"] = ICEBERG_EXTENSIONS
    if settings.spark_master.startswith("local"):
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    elif settings.spark_driver_host:  # the address executors on other machines connect back to
        conf["spark.driver.host"] = settings.spark_driver_host
    conf.update(extra or {})
    return conf


def build_spark_session(settings: Settings, app_name: str = "pipeline",
                        extra_conf: Mapping[str, str] | None = None, kafka_connector: bool = True) -> "SparkSession":
    """Build (or return the running) SparkSession described by ``settings``.

    May block on first use while Spark resolves its Kafka connector (``kafka_connector=False``:
    without it, for static frames only).
    """
    java_executable()  # fail with one sentence before Spark prints a JVM stack trace
    check_master(settings.spark_master)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in spark_conf(settings, extra_conf, kafka_connector).items():
        builder = builder.config(key, value)
    log.info("Starting Spark (master {}, executor {} / {} core(s), connector {})", settings.spark_master,
             settings.spark_executor_memory, settings.spark_executor_cores,
             kafka_connector_package() if kafka_connector else "none")
    with preserved_handlers():  # pyspark would replace the command's SIGINT handler, see framework.signals
        spark = _start(builder)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _start(builder: "SparkSession.Builder") -> "SparkSession":
    """``builder.getOrCreate()`` in a helper thread while the main thread waits and keeps its signal handlers.

    pyspark installs its own SIGINT handler when a SparkContext starts in the main thread (it calls
    ``cancelAllJobs`` through Py4J and raises :class:`KeyboardInterrupt`); started from another thread
    it leaves the handlers alone, so a Ctrl-C during the start reaches the command's handler at once
    (:class:`framework.signals.StopSignals` asks the command to stop and the command honours it when
    the start returns). When the wait itself is interrupted (the default handler, or a second signal),
    the session is stopped as soon as its start ends and :class:`KeyboardInterrupt` propagates.
    Elsewhere than in the main thread the builder runs directly.
    """
    if threading.current_thread() is not threading.main_thread():
        return builder.getOrCreate()
    result: dict[str, Any] = {}
    done = threading.Event()
    abandoned = threading.Event()

    def start() -> None:
        try:
            result["spark"] = builder.getOrCreate()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            result["error"] = exc
        finally:
            done.set()
        if abandoned.is_set() and "spark" in result:
            result["spark"].stop()

    threading.Thread(target=start, name="spark-start", daemon=True).start()
    try:
        while not done.wait(0.2):  # short waits: the main thread runs its signal handlers promptly
            pass
    except BaseException:
        abandoned.set()
        log.warning("Spark start interrupted: the session is stopped as soon as it has started")
        raise
    if "error" in result:
        raise result["error"]
    spark: SparkSession = result["spark"]
    _make_active_here(spark)
    return spark


def _make_active_here(spark: "SparkSession") -> None:
    """Make ``spark`` the active session of the calling thread too (the JVM keeps one per thread)."""
    from pyspark.sql import SparkSession

    try:
        SparkSession._activeSession = spark
        SparkSession._get_j_spark_session_class(spark._jvm).setActiveSession(spark._jsparkSession)
    except Exception as exc:  # noqa: BLE001 - only SparkSession.getActiveSession() in this thread is affected
        log.debug("Could not make the Spark session active in the main thread: {}", exc)


def check_master(master: str, timeout: float = MASTER_PROBE_SECONDS) -> None:
    """Raise :class:`SparkUnavailableError` unless a ``spark://`` master accepts a TCP connection.

    Spark's own client retries the registration for about a minute and then
    reports only ``Cannot call methods on a stopped SparkContext``; this probe
    names the URL within ``timeout`` seconds per address. Other masters
    (``local[*]``, ``yarn``, ``k8s://``) are not probed.
    """
    if not master.startswith("spark://"):
        return
    addresses = [a.strip() for a in master[len("spark://"):].split(",") if a.strip()]
    problems = []
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            problems.append(f"{address}: {getattr(exc, 'strerror', None) or exc}")
    raise SparkUnavailableError(
        f"The Spark master {master} does not accept connections ({'; '.join(problems)}); start the master "
        "(`$SPARK_HOME/sbin/start-master.sh`) or set PIPELINE_SPARK_MASTER to a running one, or to local[*] "
        "to run Spark in this process.")


def _log4j_file(cache: Path) -> Path:
    """A log4j2 configuration that keeps Spark's console to warnings of its own."""
    path = cache / "spark-log4j2.properties"
    text = (
        "rootLogger.level = warn\n"
        "rootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\n"
        "appender.console.name = console\n"
        "appender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex\n"
        "logger.kafka.name = org.apache.kafka\nlogger.kafka.level = error\n"
        "logger.native.name = org.apache.hadoop.util.NativeCodeLoader\nlogger.native.level = error\n"
        "logger.sparkenv.name = org.apache.spark.SparkEnv\nlogger.sparkenv.level = error\n"
        "logger.utils.name = org.apache.spark.util.Utils\nlogger.utils.level = error\n"
        "logger.offsets.name = org.apache.spark.sql.execution.streaming\nlogger.offsets.level = error\n"
    )
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path
