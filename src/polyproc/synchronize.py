"""Synchronization primitives shared between processes, as in :mod:`multiprocessing.synchronize`.

Lock, RLock, Semaphore and BoundedSemaphore are native futex semaphores in shared memory;
Condition, Event and Barrier are built on them. A lock whose holder dies is taken over by
the next waiter, with an :class:`~polyproc.exceptions.AbandonedLockWarning`.
"""

from __future__ import annotations

from ._os._semaphore import RECURSIVE_MUTEX, SEM_VALUE_MAX, SEMAPHORE
from ._shared._synchronize import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
    SemLock,
)

__all__ = [
    "RECURSIVE_MUTEX",
    "SEMAPHORE",
    "SEM_VALUE_MAX",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "SemLock",
    "Semaphore",
]
