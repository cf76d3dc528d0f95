"""``pool.statistics()``: an immutable snapshot of what a pool has done."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PoolStatistics", "WorkerStatistics"]


@dataclass(frozen=True)
class WorkerStatistics:
    """One current worker: its pid, the calls it completed, and how it spent its time."""

    pid: int | None
    tasks_done: int
    busy_seconds: float
    idle_seconds: float


@dataclass(frozen=True)
class PoolStatistics:
    """A pool at one moment.

    ``tasks_*`` count calls of the task function (a chunk of n items counts n);
    ``restarts`` counts workers replaced, and ``restart_causes`` why: ``"task_timeout"``,
    ``"maxtasksperchild"``, a signal name such as ``"SIGKILL"``, or ``"exit code N"``.
    """

    workers: int
    tasks_done: int
    tasks_failed: int
    tasks_queued: int
    restarts: int
    restart_causes: dict[str, int] = field(default_factory=dict)
    per_worker: tuple[WorkerStatistics, ...] = ()
