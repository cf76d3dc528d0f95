"""Shared test constants and helpers.

Timeouts follow CPython's split: SHORT_TIMEOUT is what a call that should succeed may
take on a loaded 2-core machine; a test that reaches it has found a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SHORT_TIMEOUT = 30.0
START_METHODS = ("fork", "spawn", "forkserver")


def wait_until(predicate: Callable[[], bool], timeout: float = SHORT_TIMEOUT) -> bool:
    """Poll *predicate* with backoff until it is true or *timeout* passes.

    For conditions only polling can observe (a pid disappearing); never a substitute
    for handing over with an event or a pipe.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def process_gone(pid: int) -> bool:
    """Whether *pid* has ended (a zombie awaiting its reaper counts as ended)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
