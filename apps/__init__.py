"""Applications built on the framework: the streaming replay API and the shipped pipelines."""
from loguru import logger

logger.disable("apps")  # quiet as a library; the commands enable logging (framework.log.configure_logging)
