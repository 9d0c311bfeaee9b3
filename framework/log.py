"""Logging through loguru, configured by the commands only.

The library stays quiet (``logger.disable("framework")`` at import) until an
application calls :func:`configure_logging`, which installs one stderr sink.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Logger  # only in loguru's type stubs

FORMAT = "<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> <cyan>{extra[component]}</cyan> {message}"


def configure_logging(level: str = "INFO") -> None:
    """Send framework and application logs at ``level`` and above to stderr."""
    logger.remove()
    logger.configure(extra={"component": "-"})
    logger.add(sys.stderr, level=level.upper(), format=FORMAT, backtrace=False, diagnose=False)
    logger.enable("framework")
    logger.enable("apps")


def get_logger(component: str) -> Logger:
    """A logger bound to a component name shown in every line."""
    return logger.bind(component=component)
