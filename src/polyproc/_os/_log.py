"""The logging core of ``multiprocessing.util``: its logger, levels and helpers.

Every layer logs through :func:`sub_debug`, :func:`debug`, :func:`info` and
:func:`sub_warning`, at the points and with the messages of the standard library, under
the logger named ``"multiprocessing"`` (as the standard library does, so a program's
logging configuration applies unchanged). :mod:`polyproc.util` re-exports this module.

Disabled logging costs one global lookup per call: :mod:`logging` itself is imported
only by :func:`get_logger` (it costs a spawned child about 10 ms of start-up), and the
helpers do nothing until then.
"""

from __future__ import annotations

import atexit
import threading

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "DEBUG",
    "DEFAULT_LOGGING_FORMAT",
    "INFO",
    "LOGGER_NAME",
    "NOTSET",
    "SUBDEBUG",
    "SUBWARNING",
    "WARNING",
    "apply_inherited",
    "debug",
    "get_logger",
    "info",
    "inherited_settings",
    "log_to_stderr",
    "register_exit_function",
    "set_process_name_source",
    "sub_debug",
    "sub_warning",
]

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25
WARNING = 30

LOGGER_NAME = "multiprocessing"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"

# None until get_logger() runs: the helpers below test only this.
_logger: logging.Logger | None = None
_log_to_stderr = False
_lock = threading.Lock()
_exit_functions: list[Callable[[], object]] = []
_process_name: Callable[[], str] | None = None


def sub_debug(msg: str, *args: object) -> None:
    """Log *msg* % *args* at SUBDEBUG (5), if :func:`get_logger` was ever called."""
    if _logger is not None:
        _logger.log(SUBDEBUG, msg, *args)


def debug(msg: str, *args: object) -> None:
    """Log *msg* % *args* at DEBUG, if :func:`get_logger` was ever called."""
    if _logger is not None:
        _logger.log(DEBUG, msg, *args)


def info(msg: str, *args: object) -> None:
    """Log *msg* % *args* at INFO, if :func:`get_logger` was ever called."""
    if _logger is not None:
        _logger.log(INFO, msg, *args)


def sub_warning(msg: str, *args: object) -> None:
    """Log *msg* % *args* at SUBWARNING (25), if :func:`get_logger` was ever called."""
    if _logger is not None:
        _logger.log(SUBWARNING, msg, *args)


def get_logger() -> logging.Logger:
    """The logger of multiprocessing, named ``"multiprocessing"``; it does not propagate.

    The first call turns the helpers of this module on; as in the standard library, the
    level names SUBDEBUG and SUBWARNING are not registered (records show ``Level 5``).
    """
    global _logger
    import logging  # imported on first use: it costs a spawned child ~10 ms

    with _lock:
        if _logger is None:
            logger = logging.getLogger(LOGGER_NAME)
            logger.propagate = False
            # logging's records name the process from sys.modules["multiprocessing"],
            # which is not polyproc unless polyproc was installed under that name.
            logger.addFilter(_name_the_process)
            # logging registered its own atexit handler (shutdown) just now: run the exit
            # sequence before it, so that its records are still handled.
            for function in _exit_functions:
                atexit.unregister(function)
                atexit.register(function)
            _logger = logger
    return _logger


def log_to_stderr(level: int | str | None = None) -> logging.Logger:
    """Add a handler printing multiprocessing's records to stderr; set *level* if given.

    As in the standard library, each call adds a handler.
    """
    global _log_to_stderr
    import logging

    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _log_to_stderr = True
    return logger


def _name_the_process(record: Any) -> bool:
    if _process_name is not None:
        try:
            record.processName = _process_name()
        except Exception:  # late in interpreter shutdown: keep logging's own guess
            pass
    return True


def set_process_name_source(source: Callable[[], str]) -> None:
    """Name the process of each record with *source()* (installed by the process layer)."""
    global _process_name
    _process_name = source


def register_exit_function(function: Callable[[], object]) -> None:
    """Register *function* with :mod:`atexit`, to run before logging's own exit handler.

    The standard library's exit sequence logs; :func:`get_logger` re-registers these
    functions (in their order) after importing :mod:`logging`, as multiprocessing does.
    """
    _exit_functions.append(function)
    atexit.register(function)


def inherited_settings() -> dict[str, Any]:
    """What a child started now inherits of the logging setup (see :func:`apply_inherited`).

    Empty if this process never called :func:`get_logger`: the child then never imports
    :mod:`logging` on our account.
    """
    if _logger is None:
        return {}
    return {"log_to_stderr": _log_to_stderr, "log_level": _logger.getEffectiveLevel()}


def apply_inherited(settings: dict[str, Any]) -> None:
    """In a fresh child (spawn, forkserver): take on the parent's logging setup.

    A forked child has the parent's logger already (with its handlers): nothing to do.
    """
    if not settings or _logger is not None:
        return
    if settings.get("log_to_stderr"):
        log_to_stderr()
    if settings.get("log_level") is not None:
        get_logger().setLevel(settings["log_level"])
