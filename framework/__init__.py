"""A framework for streaming pipelines: HTTP JSON stream -> Apache Kafka -> Spark -> Parquet."""
from __future__ import annotations

from loguru import logger

from framework.errors import FrameworkError, SettingsError
from framework.settings import Settings

logger.disable("framework")

__all__ = ["FrameworkError", "Settings", "SettingsError"]
__version__ = "0.1.0"
