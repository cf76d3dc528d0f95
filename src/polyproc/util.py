"""Logging helpers, as in :mod:`multiprocessing.util`.

polyproc logs under the logger named ``"polyproc"``; it has no handler until
:func:`log_to_stderr` adds one, so by default nothing is printed.
"""

from __future__ import annotations

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

__all__ = [
    "DEBUG",
    "INFO",
    "NOTSET",
    "SUBDEBUG",
    "SUBWARNING",
    "WARNING",
    "get_logger",
    "log_to_stderr",
]

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25
WARNING = 30

LOGGER_NAME = "polyproc"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"

_stderr_handler: logging.Handler | None = None


def get_logger() -> logging.Logger:
    """polyproc's logger, with the SUBDEBUG and SUBWARNING level names registered."""
    import logging  # imported on first use: it costs a child ~10 ms of start-up

    logging.addLevelName(SUBDEBUG, "SUBDEBUG")
    logging.addLevelName(SUBWARNING, "SUBWARNING")
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    return logger


def log_to_stderr(level: int | str | None = None) -> logging.Logger:
    """Print polyproc's log records to stderr (once), optionally setting *level*."""
    global _stderr_handler
    import logging

    logger = get_logger()
    if _stderr_handler is None:
        _stderr_handler = logging.StreamHandler()
        _stderr_handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
        logger.addHandler(_stderr_handler)
    if level:
        logger.setLevel(level)
    return logger
