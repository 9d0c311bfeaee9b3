"""Every error the framework raises on purpose.

Each message is one sentence that names the value that was wrong and says what
would be right, so a command can print it as it is instead of a stack trace.
"""
from __future__ import annotations


class FrameworkError(Exception):
    """Base of all errors raised by the framework on purpose."""


class SettingsError(FrameworkError, ValueError):
    """A setting (environment variable) is unknown or malformed."""


class JavaNotFoundError(FrameworkError):
    """No usable Java runtime was found for the Kafka broker or Spark."""


class JarResolutionError(FrameworkError):
    """Maven artifacts (Kafka broker jars, Spark's Kafka connector) could not be resolved."""


class BrokerError(FrameworkError):
    """The local Kafka broker could not be started, reached or stopped."""


class KafkaUnavailableError(FrameworkError):
    """The configured Kafka bootstrap servers do not answer."""


class TopicError(FrameworkError):
    """A topic operation was refused (bad partition count, replication factor, ...)."""


class RegistryError(FrameworkError, LookupError):
    """A producer or consumer name is unknown, or a subclass is declared wrongly."""


class DeclarationError(FrameworkError, TypeError):
    """A ProducerABC/ConsumerSparkABC subclass is missing or misdeclares an attribute."""


class StreamError(FrameworkError):
    """The HTTP source stream failed after its bounded retries."""


class ProducerError(FrameworkError):
    """Producing to Kafka failed after its bounded retries."""


class ProducerConfigError(ProducerError, ValueError):
    """``producer_config`` names a key the Kafka client does not know, breaks the exactly-once contract,
    or the client itself refused the configuration (never retried)."""


class ConsumerError(FrameworkError):
    """A Spark streaming query failed."""


class DataSourceError(FrameworkError):
    """A data file or directory of the streaming API is missing, unreadable or not valid JSON Lines."""


class ApiServerError(FrameworkError):
    """The streaming API server could not bind its address."""


class EventLogError(FrameworkError):
    """An event could not be logged to Kafka: not acknowledged in time, refused, or not serializable."""


class PostgresError(FrameworkError):
    """The PostgreSQL server (local or configured) could not be started, reached or used."""


class SimulationError(FrameworkError):
    """A simulation model's function failed, or a run cannot be simulated as asked."""


class SparkUnavailableError(FrameworkError):
    """The Spark master does not answer, or Spark could not start."""


class OutputError(FrameworkError):
    """The output directory (tables, checkpoints) cannot be created or written."""


class SinkSchemaError(FrameworkError, ValueError):
    """A batch does not fit its database table, or a sink's table, key or aggregation is declared wrongly."""


class TrinoError(FrameworkError):
    """The local Trino server could not be had (no Java 24+, download failed) or does not answer."""
