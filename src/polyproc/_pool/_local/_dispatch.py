"""Dispatch in the local engine: which worker gets which batch, and when.

How much a worker may hold is set by time, not by count: enough queued work to keep it
busy for about two milliseconds (from the measured time per task), at least one task
behind the running one, at most ``prefetch_depth`` batches. Tiny tasks then flow in
bursts of dozens per system call, while long tasks are dealt out one by one so that no
worker sits idle while another holds a backlog. Batches come from the queue first, then
from the lazy sources (imap), which are read only when a worker has room.

When a worker is idle while another holds unstarted tasks behind a task that has run
for a while (its started count has not moved for ``STALL_FACTOR`` times the measured
task time, at least ``STALL_MIN_SECONDS``), those tasks are taken back and go to the
idle worker (``Dispatcher._revoke``; race-free by a compare-and-swap, see ``_worker``).

Everything here runs under the engine's lock, from any thread.
"""

from __future__ import annotations

import collections
import itertools
import time

from ..._os import _log
from .._contract import WAIT
from .._worker import BATCH_HEADER, RESUME, REVOKED
from ._workers import load

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .._contract import Batch, Source
    from ._workers import WorkerHandle

__all__ = [
    "MAX_PREFETCH_BATCHES",
    "MAX_TASKS_PER_BATCH",
    "PREFETCH_SECONDS",
    "STALL_FACTOR",
    "STALL_MIN_SECONDS",
    "Dispatcher",
]

#: Queued work a worker may hold beyond the task it runs, in estimated seconds.
PREFETCH_SECONDS = 0.002
#: Most batches a worker may hold.
MAX_PREFETCH_BATCHES = 64
#: Most tasks an imap batch groups.
MAX_TASKS_PER_BATCH = 64
PREFETCH_LIMIT_BYTES = 64 * 1024  # larger batches wait for an idle worker
#: A worker whose started count has not moved for this many times the measured task
#: time (and at least STALL_MIN_SECONDS) gives its unstarted tasks to an idle worker.
STALL_FACTOR = 4.0
STALL_MIN_SECONDS = 0.02


class Dispatcher:
    """The queue of batches and lazy sources, and the rule that deals them to workers.

    The engine owns the lock and the workers; it shares its list of workers with the
    dispatcher, and updates ``task_seconds`` as reports arrive.
    """

    def __init__(self, workers: list[WorkerHandle], maxtasks: int | None) -> None:
        self.workers = workers
        self.maxtasks = maxtasks
        self.pending: collections.deque[Batch] = collections.deque()
        self.sources: collections.deque[Source] = collections.deque()
        self._ids = itertools.count(1)
        # Most batches a worker may hold; an executor asks for 2, so that a future stays
        # cancellable until shortly before it runs.
        self.prefetch_depth = MAX_PREFETCH_BATCHES
        self.task_seconds: float | None = None  # running estimate of one task's time

    def dispatch(self) -> None:
        """Give queued work to workers with room, always to the least loaded one first
        (so a few long tasks spread over the workers); then one send per worker."""
        plan: dict[WorkerHandle, list[Batch]] = {}
        full: set[WorkerHandle] = set()
        while True:
            candidates = [w for w in self.workers if w not in full and self.has_room(w)]
            if not candidates:
                break
            worker = min(candidates, key=load)
            batch = self._take_batch(worker)
            if batch is None:
                if not (self.pending or self.sources):
                    break
                full.add(worker)  # what is queued must wait for an idle worker
                continue
            self._assign(worker, batch)
            plan.setdefault(worker, []).append(batch)
        for worker, batches in plan.items():
            self._send(worker, batches)

    def has_room(self, worker: WorkerHandle) -> bool:
        if worker.gone or worker.timed_out is not None or self._stalled(worker):
            return False
        if self.maxtasks is not None and worker.sent_tasks >= self.maxtasks:
            return False
        if not worker.outstanding:
            return True
        if (
            worker.holds_deadline
            or len(worker.outstanding) >= self.prefetch_depth
            or worker.unstarted_bytes > PREFETCH_LIMIT_BYTES
        ):
            return False
        queued = worker.unreported_tasks - 1
        if queued < 1:
            return True
        estimate = self.task_seconds
        return estimate is not None and queued * estimate < PREFETCH_SECONDS

    @staticmethod
    def _stalled(worker: WorkerHandle) -> bool:
        """Whether *worker* still runs the task it was stuck on (see _revoke)."""
        if worker.stalled and not worker.outstanding:
            worker.stalled = False
        return worker.stalled

    def _max_tasks(self, worker: WorkerHandle) -> int:
        estimate = self.task_seconds
        if estimate is None or self.prefetch_depth < MAX_PREFETCH_BATCHES:
            count = 1
        else:
            count = int(PREFETCH_SECONDS / max(estimate, 1e-7))
            count = max(1, min(MAX_TASKS_PER_BATCH, count))
        if self.maxtasks is not None:
            count = min(count, self.maxtasks - worker.sent_tasks)
        return count

    def _take_batch(self, worker: WorkerHandle) -> Batch | None:
        """The next batch *worker* may take, or None (nothing queued, or what is queued
        needs an idle worker)."""
        while True:
            if self.pending:
                batch = self.pending.popleft()
            else:
                found = self._from_sources(self._max_tasks(worker))
                if found is None:
                    return None
                batch = found
            if worker.outstanding and (
                batch.timeout is not None or len(batch.data) > PREFETCH_LIMIT_BYTES
            ):
                self.pending.appendleft(batch)
                return None
            if self.maxtasks is not None and batch.tasks > self.maxtasks - worker.sent_tasks:
                self.pending.appendleft(batch)
                return None
            if batch.on_start is None or batch.on_start():
                return batch

    def _from_sources(self, max_tasks: int) -> Batch | None:
        for source in list(self.sources):
            while True:
                try:
                    batch = source.next_batch(max_tasks)
                except BaseException as exc:  # the caller's iterable raised
                    self.sources.remove(source)
                    source.fail(exc)
                    break
                if batch is None:
                    self.sources.remove(source)
                    break
                if batch is WAIT:
                    break  # its caller has results to read first; it wakes us then
                return batch
        return None

    def _assign(self, worker: WorkerHandle, batch: Batch) -> None:
        batch.id = next(self._ids)
        batch.reported = 0
        tasks = batch.tasks
        worker.sent_tasks += tasks
        worker.unreported_tasks += tasks
        if worker.outstanding:
            worker.unstarted_bytes += len(batch.data)
        worker.outstanding.append(batch)
        if batch.timeout is not None:
            worker.holds_deadline = True
            batch.deadline = time.monotonic() + batch.timeout

    def _send(self, worker: WorkerHandle, batches: list[Batch]) -> None:
        frames = [
            (BATCH_HEADER.pack(b.id, b.start, b.stop, b.chunksize) + b.data, b.buffers)
            for b in batches
        ]
        try:
            worker.sock.send(frames)
        except OSError:
            # The worker is dying; its batches go back to the queue when its sentinel
            # fires (none of them started: the shared count says so).
            worker.gone = True

    # -- the manager thread ------------------------------------------------------------

    # -- taking back tasks from a stuck worker ------------------------------------------
    def check_stalls(self) -> float | None:
        """Take back unstarted tasks from workers stuck on one task while another worker
        is idle; return the seconds until the next look is due, or None (nothing to
        watch). Costs nothing while no worker is idle (the manager's fast path)."""
        workers = self.workers
        if not any(not w.outstanding and self.has_room(w) for w in workers):
            return None
        estimate = self.task_seconds or 0.0
        threshold = max(STALL_MIN_SECONDS, STALL_FACTOR * estimate)
        now = time.monotonic()
        due: float | None = None
        revoked = False
        for worker in workers:
            if not worker.outstanding or worker.gone or worker.stalled:
                continue
            word = worker.started[0]
            if word & REVOKED or worker.sent_tasks <= word:
                continue  # being taken back already, or nothing unstarted
            if word != worker.seen_started:
                worker.seen_started, worker.seen_at = word, now
            wait = worker.seen_at + threshold - now
            if wait > 0:
                due = wait if due is None else min(due, wait)
            elif self._revoke(worker, word):
                revoked = True
        if revoked:
            self.dispatch()
            return 0.0  # look again: another worker may be stuck too
        return due

    def _revoke(self, worker: WorkerHandle, word: int) -> bool:
        """Take back the tasks *worker* has not started (it had started *word*); False if
        it started another meanwhile (it is not stuck after all)."""
        if not worker.claim.compare_and_swap(word, word | REVOKED):
            return False
        # From here the worker starts nothing until it reads the RESUME frame.
        keep = word - worker.reported_tasks  # started, not yet reported: they stay
        kept: collections.deque[Batch] = collections.deque()
        again: list[Batch] = []
        revoked_tasks = 0
        for batch in worker.outstanding:
            unreported = batch.tasks - batch.reported
            if keep >= unreported:
                kept.append(batch)
                keep -= unreported
                continue
            split = batch.start + (batch.reported + keep) * batch.chunksize
            revoked_tasks += unreported - keep
            if split > batch.start:
                # Part of it started: the rest becomes a batch of its own, and the worker
                # reports this one complete after the tasks it started.
                again.append(batch.view(split, batch.stop))
                batch.stop = split
                kept.append(batch)
            else:
                batch.on_start = None  # started once already (an executor's future)
                again.append(batch)
            keep = 0
        worker.outstanding = kept
        worker.sent_tasks -= revoked_tasks
        worker.unreported_tasks -= revoked_tasks
        worker.unstarted_bytes = sum(len(b.data) for b in list(kept)[1:])
        worker.holds_deadline = bool(kept) and kept[0].deadline is not None
        worker.stalled = True
        self.pending.extendleft(reversed(again))
        _log.debug("took back %d unstarted tasks from a worker stuck on one", revoked_tasks)
        try:
            worker.sock.send([(RESUME, ())])
        except OSError:
            worker.gone = True  # dying: its sentinel will tell
        return True
