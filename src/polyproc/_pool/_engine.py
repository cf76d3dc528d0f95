"""The local pool engine: worker processes, and the one thread that watches them.

Data flow::

    caller ── submit(batch) ───┐  dispatch (the caller's thread when a worker   ┌ worker 1
    imap   ── add_source(gen) ─┤  has room, else the manager thread)  ─────────┤ worker 2
                               │                                                └ ...
    result objects <── deliver <── manager thread: reports, deaths, deadlines <──┘

Each worker has its own socket, so the engine always knows which batches a worker holds:
its ``outstanding`` deque, oldest first. The worker runs them in order and reports each
task's outcome; a batch leaves the deque when all its tasks are reported.

How much a worker may hold is set by time, not by count: enough queued work to keep it
busy for about two milliseconds (from the measured time per task), at least one task
behind the running one, at most ``prefetch_depth`` batches. Tiny tasks then flow in
bursts of dozens per system call, while long tasks are dealt out one by one so that no
worker sits idle while another holds a backlog.

The manager thread blocks in one ``poll`` on the workers' sockets, their sentinels (a
pidfd that becomes readable when the process ends) and a wake-up pipe, with a timeout set
by the nearest task deadline. From there:

* a report completes tasks of the head batches of that worker;
* a sentinel means the worker died: from the count of tasks it had started (shared memory,
  see ``_worker``), the task it was running fails with a WorkerLostError naming the task
  and how the worker died; tasks it had finished whose results were not yet sent, and
  tasks it had not started, go back to the front of the queue; a new worker takes its
  place;
* a deadline that passes kills the worker running that task (SIGKILL); the task fails with
  TimeoutError and the worker is replaced like a dead one;
* a failure the retry policy covers (``retries``/``retry_on``) puts the task back in the
  queue instead, up to ``retries`` more times;
* an initializer that raises breaks the pool: every task fails with InitializerError;
  so do workers that die while starting, again and again (``MAX_STARTUP_DEATHS`` in a row
  with no worker ready): a ProcessError (InitializerError if the initializer was running)
  whose cause is the child's own error, instead of respawning them forever;
* a result (or exception) that pickled in the worker but does not unpickle here fails
  its task alone with a SerializationError; the report's other tasks are unaffected;
* when a worker is idle while another holds unstarted tasks behind a task that has run
  for a while (its started count has not moved for ``STALL_FACTOR`` times the measured
  task time, at least ``STALL_MIN_SECONDS``), those tasks are taken back and go to the
  idle worker (``_revoke``; race-free by a compare-and-swap, see ``_worker``).

No caller ever waits on something the manager cannot resolve: ``terminate`` and a broken
pool fail whatever is still pending. Results are delivered outside the engine's lock, so
a callback may submit more work.
"""

from __future__ import annotations

import collections
import itertools
import os
import select
import signal
import socket
import threading
import time

from .._os import _log
from .._os._atomic import AtomicWord
from .._os._procs import describe_exit
from .._os._threads import mark_internal
from .._os._wait import wait_readable
from .._shared import _heap
from .._wire import _pickling
from .._wire._connection import Connection
from .._wire._frames import FrameSocket
from .._wire._remote_error import unpack_exception
from ..exceptions import (
    InitializerError,
    ProcessError,
    SerializationError,
    TimeoutError,
    WorkerLostError,
)
from ._contract import WAIT, Batch, RetryPolicy, RunState
from ._stats import PoolStatistics, WorkerStatistics
from ._worker import (
    BATCH_HEADER,
    INIT_FAILED,
    INITIALIZING,
    LOG,
    READY,
    REPORT,
    RESUME,
    RETIRE,
    REVOKED,
    SHARED_BYTES,
    WorkerOptions,
    worker_main,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._contract import Source

__all__ = ["PoolEngine"]

#: Queued work a worker may hold beyond the task it runs, in estimated seconds.
PREFETCH_SECONDS = 0.002
#: Most batches a worker may hold.
MAX_PREFETCH_BATCHES = 64
#: Most tasks an imap batch groups.
MAX_TASKS_PER_BATCH = 64
_PREFETCH_LIMIT_BYTES = 64 * 1024  # larger batches wait for an idle worker
#: Workers dying before they are ready, in a row, after which the pool gives up.
MAX_STARTUP_DEATHS = 3
#: A worker whose started count has not moved for this many times the measured task
#: time (and at least STALL_MIN_SECONDS) gives its unstarted tasks to an idle worker.
STALL_FACTOR = 4.0
STALL_MIN_SECONDS = 0.02
_COUNT_MASK = REVOKED - 1
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_pool_ids = itertools.count(1)


class _Worker:
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


class PoolEngine:
    """Worker processes of one context, fed by the callers and watched by a thread."""

    def __init__(
        self,
        ctx: Any,
        processes: int,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        maxtasksperchild: int | None,
        options: WorkerOptions | None = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._ctx = ctx
        self._size = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasks = maxtasksperchild
        self._options = options or WorkerOptions(maxtasksperchild, None, None, 1 << 16)
        self._retry = RetryPolicy(retries, retry_on)
        self._lock = threading.Lock()
        self._pending: collections.deque[Batch] = collections.deque()
        self._sources: collections.deque[Source] = collections.deque()
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._state = RunState.RUN
        self._broken: BaseException | None = None
        # Most batches a worker may hold; an executor asks for 2, so that a future stays
        # cancellable until shortly before it runs.
        self.prefetch_depth = MAX_PREFETCH_BATCHES
        self._task_seconds: float | None = None  # running estimate of one task's time
        self._done = 0
        self._failed = 0
        self._restarts: collections.Counter[str] = collections.Counter()
        self._startup_deaths = 0  # workers that died before they were ready, in a row
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_sent = False
        # One poller for the pool's life: the wake-up pipe, and each worker's socket and
        # sentinel, registered when the worker starts and dropped when it ends.
        self._poller = select.poll()
        self._poller.register(self._wake_r, _READABLE)
        self._by_fd: dict[int, _Worker] = {}
        self.name = f"polyproc-pool-{next(_pool_ids)}"
        self._start_first_workers(processes)
        self._thread = threading.Thread(target=self._manage, name=f"{self.name}-manager",
                                        daemon=True)
        mark_internal(self._thread).start()

    # -- called by the Pool, in any thread ------------------------------------------
    @property
    def size(self) -> int:
        """The number of worker processes the pool keeps."""
        return self._size

    @property
    def state(self) -> RunState:
        """Where the pool is in its life."""
        return self._state

    def check_running(self) -> None:
        """Raise ValueError unless the pool accepts work (as multiprocessing does)."""
        if self._state is not RunState.RUN:
            raise ValueError("Pool not running")

    def submit(self, batch: Batch) -> None:
        """Queue *batch*; send it at once if a worker has room."""
        with self._lock:
            if self._state is not RunState.RUN:
                raise ValueError("Pool not running")
            broken = self._broken
            if broken is None:
                pending = self._pending
                pending.append(batch)
                # With a backlog already queued, the workers were full: the manager sends
                # more as results free room. Looking again now and then keeps the workers
                # fed while a caller submits in a tight loop and holds the GIL.
                wake = False
                if len(pending) == 1:
                    self._dispatch()
                    wake = batch.timeout is not None or (
                        bool(pending) and not any(w.outstanding for w in self._workers)
                    )
        if broken is not None:
            batch.deliver(batch.start, False, ([], broken))
        elif wake:
            self._wake()

    def submit_many(self, batches: Iterable[Batch]) -> None:
        """Queue each of *batches* as it comes: workers start on the first ones while
        the caller is still pickling the rest."""
        for batch in batches:
            self.submit(batch)

    def add_source(self, source: Source) -> None:
        """Queue a lazy stream of batches; they are read as workers have room."""
        source.resume = self._wake  # a paused source (see WAIT) calls it to go on
        with self._lock:
            self.check_running()
            broken = self._broken
            if broken is None:
                self._sources.append(source)
                self._dispatch()
        if broken is not None:
            source.fail(broken)
        self._wake()

    def close(self) -> None:
        """Accept no more work; workers exit once everything queued is done."""
        with self._lock:
            if self._state is RunState.RUN:
                self._state = RunState.CLOSE
            sources = list(self._sources)
        # join() waits for every input to be read: none may wait for its reader now.
        for source in sources:
            drain = getattr(source, "drain", None)
            if drain is not None:
                drain()
        self._wake()

    def terminate(self) -> None:
        """Stop now: kill the workers and fail whatever has not completed."""
        with self._lock:
            self._state = RunState.TERMINATE
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the manager thread (and so every worker) to finish.

        Raises:
            ValueError: the pool is still running (call close or terminate first).
        """
        if self._state is RunState.RUN:
            raise ValueError("Pool is still running")
        self._thread.join(timeout)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's counters (see PoolStatistics)."""
        now = time.monotonic()
        with self._lock:
            per_worker = tuple(
                WorkerStatistics(w.process.pid, w.done, w.busy_seconds,
                                 max(0.0, now - w.born - w.busy_seconds))
                for w in self._workers
            )
            queued = sum(batch.stop - batch.start for batch in self._pending)
        return PoolStatistics(
            workers=len(per_worker),
            tasks_done=self._done,
            tasks_failed=self._failed,
            tasks_queued=queued,
            restarts=sum(self._restarts.values()),
            restart_causes=dict(self._restarts),
            per_worker=per_worker,
        )

    def worker_pids(self) -> list[int]:
        """The pids of the current workers (for tests and statistics)."""
        return [w.process.pid for w in list(self._workers)]

    def _wake(self) -> None:
        if self._wake_sent:
            return  # the manager has a wake-up to read already
        self._wake_sent = True
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake, or shutting down

    # -- starting workers ----------------------------------------------------------------
    def _start_first_workers(self, count: int) -> None:
        # All or nothing: if one cannot start, stop the ones that did (bpo-19675).
        started: list[_Worker] = []
        try:
            for _ in range(count):
                started.append(self._launch_worker())
        except BaseException:
            for worker in started:
                worker.process.terminate()
                worker.process.join()
                worker.sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        for worker in started:
            self._register(worker)

    def _launch_worker(self) -> _Worker:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_conn = Connection(child_end.detach())
        block = _heap.allocate(SHARED_BYTES)
        words = block.view().cast("q")
        words[0] = words[1] = 0
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, block, self._initializer, self._initargs, self._options),
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
        return _Worker(process, FrameSocket(parent_end), block)

    def _register(self, worker: _Worker) -> None:
        self._workers.append(worker)
        for fd in (worker.sock.fileno(), worker.process.sentinel):
            self._poller.register(fd, _READABLE)
            self._by_fd[fd] = worker

    # -- dispatching (under the lock, from any thread) ----------------------------------
    def _dispatch(self) -> None:
        """Give queued work to workers with room, always to the least loaded one first
        (so a few long tasks spread over the workers); then one send per worker."""
        plan: dict[_Worker, list[Batch]] = {}
        full: set[_Worker] = set()
        while True:
            candidates = [w for w in self._workers if w not in full and self._has_room(w)]
            if not candidates:
                break
            worker = min(candidates, key=_load)
            batch = self._take_batch(worker)
            if batch is None:
                if not (self._pending or self._sources):
                    break
                full.add(worker)  # what is queued must wait for an idle worker
                continue
            self._assign(worker, batch)
            plan.setdefault(worker, []).append(batch)
        for worker, batches in plan.items():
            self._send(worker, batches)

    def _has_room(self, worker: _Worker) -> bool:
        if worker.gone or worker.timed_out is not None or self._stalled(worker):
            return False
        if self._maxtasks is not None and worker.sent_tasks >= self._maxtasks:
            return False
        if not worker.outstanding:
            return True
        if (
            worker.holds_deadline
            or len(worker.outstanding) >= self.prefetch_depth
            or worker.unstarted_bytes > _PREFETCH_LIMIT_BYTES
        ):
            return False
        queued = worker.unreported_tasks - 1
        if queued < 1:
            return True
        estimate = self._task_seconds
        return estimate is not None and queued * estimate < PREFETCH_SECONDS

    @staticmethod
    def _stalled(worker: _Worker) -> bool:
        """Whether *worker* still runs the task it was stuck on (see _revoke)."""
        if worker.stalled and not worker.outstanding:
            worker.stalled = False
        return worker.stalled

    def _max_tasks(self, worker: _Worker) -> int:
        estimate = self._task_seconds
        if estimate is None or self.prefetch_depth < MAX_PREFETCH_BATCHES:
            count = 1
        else:
            count = int(PREFETCH_SECONDS / max(estimate, 1e-7))
            count = max(1, min(MAX_TASKS_PER_BATCH, count))
        if self._maxtasks is not None:
            count = min(count, self._maxtasks - worker.sent_tasks)
        return count

    def _take_batch(self, worker: _Worker) -> Batch | None:
        """The next batch *worker* may take, or None (nothing queued, or what is queued
        needs an idle worker)."""
        while True:
            if self._pending:
                batch = self._pending.popleft()
            else:
                found = self._from_sources(self._max_tasks(worker))
                if found is None:
                    return None
                batch = found
            if worker.outstanding and (
                batch.timeout is not None or len(batch.data) > _PREFETCH_LIMIT_BYTES
            ):
                self._pending.appendleft(batch)
                return None
            if self._maxtasks is not None and batch.tasks > self._maxtasks - worker.sent_tasks:
                self._pending.appendleft(batch)
                return None
            if batch.on_start is None or batch.on_start():
                return batch

    def _from_sources(self, max_tasks: int) -> Batch | None:
        for source in list(self._sources):
            while True:
                try:
                    batch = source.next_batch(max_tasks)
                except BaseException as exc:  # the caller's iterable raised
                    self._sources.remove(source)
                    source.fail(exc)
                    break
                if batch is None:
                    self._sources.remove(source)
                    break
                if batch is WAIT:
                    break  # its caller has results to read first; it wakes us then
                return batch
        return None

    def _assign(self, worker: _Worker, batch: Batch) -> None:
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

    def _send(self, worker: _Worker, batches: list[Batch]) -> None:
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
    def _manage(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._state is RunState.TERMINATE:
                        break
                    self._dispatch()
                    if self._state is RunState.CLOSE and self._idle_forever():
                        break
                    timeout = self._time_to_next_deadline()
                    stall = self._check_stalls()
                    if stall is not None and (timeout is None or stall < timeout):
                        timeout = stall
                events = self._poller.poll(
                    None if timeout is None else max(0, int(timeout * 1000) + 1)
                )
                deliveries: list[tuple[Any, ...]] = []
                exited: list[_Worker] = []
                for fd, _event in events:
                    if fd == self._wake_r:
                        self._drain_wake_pipe()
                        continue
                    worker = self._by_fd.get(fd)
                    if worker is None:
                        continue
                    if fd == worker.process.sentinel:
                        exited.append(worker)
                    else:
                        self._receive(worker, deliveries)
                for worker in exited:
                    self._receive_the_rest(worker, deliveries)
                    with self._lock:
                        self._on_exit(worker, deliveries)
                with self._lock:
                    self._enforce_deadlines()
                self._deliver(deliveries)
                del deliveries, exited  # keep no task's results alive (bpo-29861)
        finally:
            self._shut_down()

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        # Only now: a wake-up sent while the pipe was being read stays in it. Cleared
        # first, a _wake() in between would find the flag set and an empty pipe, and be
        # lost (a paused imap input would then never be read again).
        with self._lock:
            self._wake_sent = False

    def _idle_forever(self) -> bool:
        return not self._pending and not self._sources and not any(
            w.outstanding for w in self._workers
        )

    def _receive(self, worker: _Worker, deliveries: list[tuple[Any, ...]]) -> None:
        try:
            frames = worker.sock.receive()
        except (EOFError, OSError):
            # It is dying; its sentinel will say so. Stop polling a socket at its end.
            worker.gone = worker.eof = True
            fd = worker.sock.fileno()
            self._poller.unregister(fd)
            del self._by_fd[fd]
            return
        if not frames:
            return
        messages = _load_messages(frames)
        with self._lock:
            for message in messages:
                self._on_message(worker, message, deliveries)

    def _receive_the_rest(self, worker: _Worker, deliveries: list[tuple[Any, ...]]) -> None:
        """Read what a worker sent before it exited (it may have reported, then died)."""
        fd = worker.sock.fileno()
        while not worker.eof and wait_readable([fd], 0):
            try:
                frames = worker.sock.receive()
            except (EOFError, OSError):
                worker.eof = True
                return
            messages = _load_messages(frames)
            with self._lock:
                for message in messages:
                    self._on_message(worker, message, deliveries)

    def _on_message(
        self, worker: _Worker, message: tuple[Any, ...], deliveries: list[tuple[Any, ...]]
    ) -> None:
        tag = message[0]
        if tag == REPORT:
            self._startup_deaths = 0  # a worker ran tasks: the pool can start workers
            self._on_report(worker, message[1], message[2], deliveries)
        elif tag == LOG:
            deliveries.append((_emit_log_record, message[1]))
        elif tag == RETIRE:
            worker.gone = True
            worker.retired = message[1]
        elif tag == INIT_FAILED:
            cause = unpack_exception(message[1])
            error = InitializerError(f"the pool's initializer raised in a worker: {cause!r}")
            error.__cause__ = cause
            self._break(error, deliveries)
        elif tag is _UNREADABLE:
            _log.debug("dropped a worker's message: %r", message[1])
        else:
            raise ProcessError(f"pool protocol error: unknown message {tag!r}")

    def _on_report(
        self,
        worker: _Worker,
        busy: float,
        outcomes: list[tuple[Any, ...]],
        deliveries: list[tuple[Any, ...]],
    ) -> None:
        worker.busy_seconds += busy
        reported = 0
        for batch_id, first, tasks, sent_ok, sent_values, packed in outcomes:
            batch = worker.outstanding[0]
            if batch.id != batch_id:  # cannot happen with one socket per worker: be loud
                raise ProcessError(
                    f"pool protocol error: got batch {batch_id}, expected {batch.id}"
                )
            batch.reported += tasks
            reported += tasks
            ok, values = sent_ok, sent_values
            error: BaseException | None = None
            if values is None:  # pickled apart: it may not unpickle here (see _worker)
                values, error = _load_apart(packed, batch.describe_task(first))
                ok = error is None
            elif not ok:
                error = _unpack_error(packed, batch.describe_task(first))
            worker.done += len(values)
            self._done += len(values)
            if ok:
                deliveries.append((batch.deliver, first, True, values))
            else:
                assert error is not None
                for index in range(tasks):
                    task_first = first + index * batch.chunksize
                    self._fail_task(batch, task_first, values if index == 0 else [], error,
                                    deliveries)
            if batch.reported >= batch.tasks:
                worker.outstanding.popleft()
                worker.holds_deadline = False
                if worker.outstanding:
                    worker.unstarted_bytes -= len(worker.outstanding[0].data)
        worker.reported_tasks += reported
        worker.unreported_tasks -= reported
        if reported and busy > 0:
            sample = busy / reported
            previous = self._task_seconds
            self._task_seconds = sample if previous is None else 0.7 * previous + 0.3 * sample

    def _fail_task(
        self,
        batch: Batch,
        first: int,
        values: list[Any],
        error: BaseException,
        deliveries: list[tuple[Any, ...]],
    ) -> None:
        """Retry the task at item *first* if the policy says so, else deliver *error*."""
        again = self._retry.retry(batch, first, error)
        if again is not None:
            self._pending.appendleft(again)
            return
        self._failed += 1
        deliveries.append((batch.deliver, first, False, (values, error)))

    def _on_exit(self, worker: _Worker, deliveries: list[tuple[Any, ...]]) -> None:
        if worker not in self._workers:
            return
        _log.debug("cleaning up worker %d", self._workers.index(worker))
        self._workers.remove(worker)
        for fd in (worker.sock.fileno(), worker.process.sentinel):
            if self._by_fd.pop(fd, None) is not None:
                self._poller.unregister(fd)
        worker.process.join(5)
        exitcode = worker.process.exitcode
        pid = worker.process.pid
        worker.sock.close()
        started = worker.started[0] & _COUNT_MASK
        lost = started - worker.reported_tasks  # started, never reported
        stage = worker.started[1]
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
        worker.outstanding.clear()
        self._pending.extendleft(reversed(again))
        self._restarts[self._cause_of_exit(worker, culprit, exitcode)] += 1
        if culprit is not None and self._broken is None:
            batch, first = culprit
            if worker.timed_out is batch:
                error: BaseException = TimeoutError(
                    f"{batch.describe_task(first)} did not finish within its task_timeout "
                    f"of {batch.timeout:g} s; the pool killed its worker (pid {pid}) and "
                    f"replaced it"
                )
            else:
                error = WorkerLostError(
                    f"{batch.describe_task(first)} was lost: its worker (pid {pid}) "
                    f"{describe_exit(exitcode)}; the pool replaced the worker"
                )
            self._fail_task(batch, first, [], error, deliveries)
        if stage != READY and self._state is not RunState.TERMINATE and self._broken is None:
            self._on_startup_death(worker, stage, exitcode, deliveries)
        elif stage == READY:
            self._startup_deaths = 0
        if self._state is not RunState.TERMINATE and self._broken is None:
            self._register(self._launch_worker())

    def _on_startup_death(
        self, worker: _Worker, stage: int, exitcode: Any, deliveries: list[tuple[Any, ...]]
    ) -> None:
        """Count a worker that died before it was ready; break the pool after
        MAX_STARTUP_DEATHS in a row while no other worker is ready (a child that cannot
        start at all: respawning it would spin forever)."""
        self._startup_deaths += 1
        if self._startup_deaths < MAX_STARTUP_DEATHS:
            return
        if any(w.started[1] == READY for w in self._workers):
            return  # others run: this one was unlucky (killed while it started, say)
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
            f"{self._startup_deaths} pool workers in a row died {where}, before running any "
            f"task; the last (pid {pid}) {what}. The pool stopped starting workers"
        )
        if stage != INITIALIZING and self._ctx.get_start_method() != "fork":
            message += (
                " (with the spawn and forkserver start methods, the main module must guard "
                "the code that starts processes with if __name__ == '__main__')"
            )
        error: ProcessError = (
            InitializerError(message) if stage == INITIALIZING else ProcessError(message)
        )
        error.__cause__ = cause
        self._break(error, deliveries)

    # -- taking back tasks from a stuck worker --------------------------------------------
    def _check_stalls(self) -> float | None:
        """Take back unstarted tasks from workers stuck on one task while another worker
        is idle; return the seconds until the next look is due, or None (nothing to
        watch). Costs nothing while no worker is idle (the manager's fast path)."""
        workers = self._workers
        if not any(not w.outstanding and self._has_room(w) for w in workers):
            return None
        estimate = self._task_seconds or 0.0
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
            self._dispatch()
            return 0.0  # look again: another worker may be stuck too
        return due

    def _revoke(self, worker: _Worker, word: int) -> bool:
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
        self._pending.extendleft(reversed(again))
        _log.debug("took back %d unstarted tasks from a worker stuck on one", revoked_tasks)
        try:
            worker.sock.send([(RESUME, ())])
        except OSError:
            worker.gone = True  # dying: its sentinel will tell
        return True

    def _cause_of_exit(
        self, worker: _Worker, culprit: tuple[Batch, int] | None, exitcode: Any
    ) -> str:
        if culprit is not None and worker.timed_out is culprit[0]:
            return "task_timeout"
        if worker.retired is not None:
            return "max_worker_memory"
        if (
            culprit is None
            and self._maxtasks is not None
            and worker.sent_tasks >= self._maxtasks
        ):
            return "maxtasksperchild"
        if isinstance(exitcode, int) and exitcode < 0:
            try:
                return signal.Signals(-exitcode).name
            except ValueError:
                return f"signal {-exitcode}"
        return f"exit code {exitcode}"

    def _time_to_next_deadline(self) -> float | None:
        deadlines = [
            w.outstanding[0].deadline
            for w in self._workers
            if w.outstanding and w.outstanding[0].deadline is not None and w.timed_out is None
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.outstanding and worker.timed_out is None:
                head = worker.outstanding[0]
                if head.deadline is not None and now >= head.deadline:
                    worker.timed_out = head
                    worker.process.kill()  # its sentinel fires; _on_exit fails the task

    @staticmethod
    def _deliver(deliveries: list[tuple[Any, ...]]) -> None:
        for function, *args in deliveries:
            function(*args)
        deliveries.clear()

    def _break(self, error: BaseException, deliveries: list[tuple[Any, ...]]) -> None:
        self._broken = error
        for worker in self._workers:
            for batch in worker.outstanding:
                deliveries.append((batch.fail_unreported, error))
            worker.outstanding.clear()
        deliveries.append((self._fail_queued, error))

    def _fail_queued(self, error: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, collections.deque()
            sources, self._sources = self._sources, collections.deque()
        for batch in pending:
            batch.fail_unreported(error)
        for source in sources:
            source.fail(error)

    def _shut_down(self) -> None:
        terminated = self._state is RunState.TERMINATE
        error = ProcessError("the pool was terminated before this task completed")
        for worker in self._workers:
            if terminated:
                worker.process.kill()
            else:
                try:
                    worker.sock.send([(b"", ())])
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(None if not terminated else 5)
            for batch in worker.outstanding:
                batch.fail_unreported(error)
            worker.sock.close()
        self._workers.clear()
        self._fail_queued(error)
        os.close(self._wake_r)
        os.close(self._wake_w)


def _load(worker: _Worker) -> int:
    return worker.unreported_tasks


#: The tag of a message that did not unpickle (a log record with an odd attribute).
_UNREADABLE: Any = object()


def _load_messages(frames: list[tuple[Any, list[Any]]]) -> list[tuple[Any, ...]]:
    """Unpickle a worker's frames. Reports always unpickle (results that may not are
    pickled apart, see _worker); anything else that does not is dropped, not fatal."""
    messages = []
    for payload, buffers in frames:
        try:
            messages.append(_pickling.loads(payload, buffers))
        except Exception as exc:
            messages.append((_UNREADABLE, repr(exc)))
    return messages


def _load_apart(packed: tuple[str, Any, list[Any]], task: str) -> tuple[Any, Any]:
    """The values of a result pickled apart, and None; or [] and the SerializationError
    saying why they did not unpickle."""
    type_names, payload, buffers = packed
    try:
        return _pickling.loads(payload, buffers), None
    except Exception as exc:
        error = SerializationError(
            f"the result of {task} (of type {type_names}) was pickled by the worker but "
            f"could not be unpickled in the parent: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = _detached(exc)
        return [], error


def _unpack_error(failure: tuple[str, bytes], task: str) -> BaseException:
    """The exception a task raised (*failure*: its type's name and the packed exception),
    or a SerializationError naming that type if it does not unpickle here."""
    type_name, packed = failure
    try:
        return unpack_exception(packed)
    except Exception as exc:
        error = SerializationError(
            f"{task} raised {type_name}, which was pickled by the worker but could not be "
            f"unpickled in the parent: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = _detached(exc)
        return error


def _detached(exc: BaseException) -> BaseException:
    """*exc*, raised here while unpickling, with its traceback as a note instead of frames:
    the frames would keep the manager's locals (workers, deliveries, results) alive
    for as long as the caller keeps the error, and make reference cycles."""
    import traceback

    text = "".join(traceback.format_tb(exc.__traceback__))
    exc.add_note(f"raised while unpickling, at:\n{text}".rstrip())
    return exc.with_traceback(None)


def _emit_log_record(attributes: dict[str, Any]) -> None:
    """Hand a record forwarded by a worker to this process's handlers."""
    import logging

    record = logging.makeLogRecord(attributes)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
