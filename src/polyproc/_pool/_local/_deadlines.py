"""Task deadlines (``task_timeout``) in the local engine.

A batch with a timeout holds a single task and is sent only to an idle worker, so its
deadline runs from when it is sent. The manager polls no longer than the nearest deadline;
one that passes kills the worker (SIGKILL): its sentinel fires, and the engine fails the
task with TimeoutError (or retries it) and replaces the worker as it does a dead one.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._workers import WorkerHandle

__all__ = ["enforce_deadlines", "time_to_next_deadline"]


def time_to_next_deadline(workers: Iterable[WorkerHandle]) -> float | None:
    """Seconds until the nearest deadline of a running task, or None (no deadline)."""
    deadlines = [
        w.outstanding[0].deadline
        for w in workers
        if w.outstanding and w.outstanding[0].deadline is not None and w.timed_out is None
    ]
    if not deadlines:
        return None
    return max(0.0, min(deadlines) - time.monotonic())


def enforce_deadlines(workers: Iterable[WorkerHandle]) -> None:
    """Kill each worker whose running task is past its deadline."""
    now = time.monotonic()
    for worker in workers:
        if worker.outstanding and worker.timed_out is None:
            head = worker.outstanding[0]
            if head.deadline is not None and now >= head.deadline:
                worker.timed_out = head
                worker.process.kill()  # its sentinel fires; _on_exit fails the task
