"""The worker handles of the local engine, and their life cycle.

A :class:`WorkerHandle` is the engine's side of one worker process: its socket, the shared
counters the worker writes (tasks started, how far it got in starting; see ``_worker``),
and the batches it holds. Here too: starting a worker (:func:`launch_worker`), and what
its death means: which of its tasks was lost and which run again (:func:`salvage`), the
cause counted in ``statistics()`` (:func:`cause_of_exit`), and the error that breaks the
pool when workers keep dying before they are ready (:func:`startup_death_error`).
"""

from __future__ import annotations

import collections
import signal
import socket
import time

from ..._os import _log
from ..._os._atomic import AtomicWord
from ..._os._procs import describe_exit
from ..._shared import _heap
from ..._wire._connection import Connection
from ..._wire._frames import FrameSocket
from ...exceptions import InitializerError, ProcessError
from .._worker import INITIALIZING, REVOKED, SHARED_BYTES, WorkerOptions, worker_main

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .._contract import Batch

__all__ = [
    "COUNT_MASK",
    "MAX_STARTUP_DEATHS",
    "WorkerHandle",
    "cause_of_exit",
    "launch_worker",
    "load",
    "salvage",
    "startup_death_error",
]

#: Workers dying before they are ready, in a row, after which the pool gives up.
MAX_STARTUP_DEATHS = 3
#: The started count without the REVOKED bit.
COUNT_MASK = REVOKED - 1


class WorkerHandle:
    """The engine's side of one worker process: its socket, its shared counters, the
    batches it holds (oldest first) and what the engine knows of its state."""

    __slots__ = (
        "block",
        "born",
        "busy_seconds",
        "claim",
        "done",
        "eof",
        "gone",
        "holds_deadline",
        "outstanding",
        "process",
        "reported_tasks",
        "retired",
        "seen_at",
        "seen_started",
        "sent_tasks",
        "sock",
        "stalled",
        "started",
        "timed_out",
        "unreported_tasks",
        "unstarted_bytes",
    )

    def __init__(self, process: Any, sock: FrameSocket, block: Any) -> None:
        self.process = process
        self.sock = sock
        self.block = block  # keeps the shared counter alive in this process
        # [0]: tasks the worker has started, ever (and the REVOKED bit); [1]: how far it
        # got in starting (STARTING, INITIALIZING, READY).
        self.started = block.view().cast("q")
        self.claim = AtomicWord(block.view(), 0)
        # Its unstarted tasks were taken back: it takes no more until its queue is empty.
        self.stalled = False
        self.seen_started = -1  # the started count last looked at, and when
        self.seen_at = 0.0
        self.outstanding: collections.deque[Batch] = collections.deque()
        self.sent_tasks = 0
        self.reported_tasks = 0
        self.unreported_tasks = 0
        self.unstarted_bytes = 0
        self.holds_deadline = False
        self.timed_out: Batch | None = None
        # Its socket broke or it announced it is leaving: it takes nothing more.
        self.gone = False
        self.eof = False  # its socket reached end of file (no longer polled)
        self.retired: str | None = None
        self.done = 0  # calls completed, for statistics()
        self.born = time.monotonic()
        self.busy_seconds = 0.0


def load(worker: WorkerHandle) -> int:
    """How busy *worker* is: its tasks not yet reported (dispatch picks the least busy)."""
    return worker.unreported_tasks


def launch_worker(
    ctx: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    options: WorkerOptions,
) -> WorkerHandle:
    """Start one worker process of *ctx* and return its handle (not yet polled)."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child_conn = Connection(child_end.detach())
    block = _heap.allocate(SHARED_BYTES)
    words = block.view().cast("q")
    words[0] = words[1] = 0
    process = ctx.Process(
        target=worker_main,
        args=(child_conn, block, initializer, initargs, options),
        daemon=True,
    )
    # ForkPoolWorker-3 and the like: the context's process name, numbered by the
    # process counter, as multiprocessing names its workers.
    process.name = process.name.replace("Process", "PoolWorker")
    try:
        process.start()
    except BaseException:
        parent_end.close()
        raise
    finally:
        child_conn.close()
    _log.debug("added worker")
    return WorkerHandle(process, FrameSocket(parent_end), block)


def salvage(
    worker: WorkerHandle, lost: int
) -> tuple[tuple[Batch, int] | None, list[Batch]]:
    """Sort out the batches of a dead *worker* that had started *lost* tasks it never
    reported: the task that died with it (its batch and first item), if any, and the
    tasks to run again, in order."""
    culprit: tuple[Batch, int] | None = None
    again: list[Batch] = []
    for batch in worker.outstanding:
        first = batch.start + batch.reported * batch.chunksize
        unreported = batch.tasks - batch.reported
        if culprit is None and 0 < lost <= unreported:
            # Tasks before the lost one finished, but their results died with the
            # worker: they run again, as do the tasks that never started.
            culprit_first = first + (lost - 1) * batch.chunksize
            culprit_end = min(culprit_first + batch.chunksize, batch.stop)
            if culprit_first > first:
                again.append(batch.view(first, culprit_first))
            culprit = (batch, culprit_first)
            if culprit_end < batch.stop:
                again.append(batch.view(culprit_end, batch.stop))
            continue
        lost -= unreported
        if first < batch.stop:
            again.append(batch.view(first, batch.stop))
    return culprit, again


def cause_of_exit(
    worker: WorkerHandle,
    culprit: tuple[Batch, int] | None,
    exitcode: Any,
    maxtasks: int | None,
) -> str:
    """Why *worker* ended, as ``statistics().restart_causes`` counts it."""
    if culprit is not None and worker.timed_out is culprit[0]:
        return "task_timeout"
    if worker.retired is not None:
        return "max_worker_memory"
    if (
        culprit is None
        and maxtasks is not None
        and worker.sent_tasks >= maxtasks
    ):
        return "maxtasksperchild"
    if isinstance(exitcode, int) and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def startup_death_error(
    worker: WorkerHandle, stage: int, exitcode: Any, deaths: int, start_method: str
) -> ProcessError:
    """The error that breaks the pool after *deaths* workers in a row died before they
    were ready, the last being *worker* (at *stage*); its cause is the child's own error."""
    cause = worker.process.exception  # what the child reported, if anything
    pid = worker.process.pid
    what = describe_exit(exitcode)
    if cause is not None:
        lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
        summary = lines[0][:200] if lines else ""
        what += f", after raising {type(cause).__name__}: {summary}"
        if len(lines) > 1:
            what += " [...]"
    where = "in the pool's initializer" if stage == INITIALIZING else "while starting"
    message = (
        f"{deaths} pool workers in a row died {where}, before running any "
        f"task; the last (pid {pid}) {what}. The pool stopped starting workers"
    )
    if stage != INITIALIZING and start_method != "fork":
        message += (
            " (with the spawn and forkserver start methods, the main module must guard "
            "the code that starts processes with if __name__ == '__main__')"
        )
    error: ProcessError = (
        InitializerError(message) if stage == INITIALIZING else ProcessError(message)
    )
    error.__cause__ = cause
    return error
