"""Queues between processes, as in :mod:`multiprocessing.queues`.

Built on a shared-memory ring instead of a pipe and a feeder thread: see
``polyproc._shared._queues`` for what that changes (put raises on unpicklable items,
nothing is lost when a process exits right after a put, no join deadlock).
"""

from __future__ import annotations

from ._shared._queues import JoinableQueue, Queue, SimpleQueue

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]
