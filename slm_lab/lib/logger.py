"""Logging: a console sink (level from ``--log-level``/``LOG_LEVEL``) and one file sink per lab unit."""

import contextlib
import os
import sys

from loguru import logger

__all__ = ["FORMAT", "LEVELS", "add_file_sink", "remove_sink", "setup_logging"]

FORMAT = "{time:YYYY-MM-DD HH:mm:ss} | {level} | PID:{process} | {name}:{function} | {message}"
_CONSOLE_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss}</green> | <level>{level}</level> | PID:{process} | "
    "<cyan>{name}</cyan>:<cyan>{function}</cyan> | <level>{message}</level>"
)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(level: str | None = None) -> None:
    """(Re)configure the console sink. Spawned session processes call this too, reading ``LOG_LEVEL``."""
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    logger.remove()
    logger.add(sys.stdout, level=level, format=_CONSOLE_FORMAT, colorize=None, enqueue=False)


def add_file_sink(path: str) -> int:
    """Log everything at DEBUG and above to ``path`` (plain text) until ``remove_sink``."""
    return logger.add(path, level="DEBUG", format=FORMAT, colorize=False, enqueue=False)


def remove_sink(sink_id: int) -> None:
    with contextlib.suppress(ValueError):
        logger.remove(sink_id)
