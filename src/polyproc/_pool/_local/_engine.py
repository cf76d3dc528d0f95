"""The local pool engine: worker processes, and the one thread that watches them.

:class:`PoolEngine` is the orchestrator: it keeps the lock, the workers and the manager
thread, and composes the parts of this package, each named below where it acts:
``_dispatch`` (who gets what), ``_workers`` (handles, launch, deaths), ``_reports``
(decoding what workers send) and ``_deadlines`` (``task_timeout``).

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
worker sits idle while another holds a backlog (``_dispatch``).

The manager thread blocks in one ``poll`` on the workers' sockets, their sentinels (a
pidfd that becomes readable when the process ends) and a wake-up pipe, with a timeout set
by the nearest task deadline. From there:

* a report completes tasks of the head batches of that worker;
* a sentinel means the worker died: from the count of tasks it had started (shared memory,
  see ``_worker``), the task it was running fails with a WorkerLostError naming the task
  and how the worker died; tasks it had finished whose results were not yet sent, and
  tasks it had not started, go back to the front of the queue; a new worker takes its
  place (``_workers.salvage``);
* a deadline that passes kills the worker running that task (SIGKILL); the task fails with
  TimeoutError and the worker is replaced like a dead one (``_deadlines``);
* a failure the retry policy covers (``retries``/``retry_on``) puts the task back in the
  queue instead, up to ``retries`` more times (``_contract.RetryPolicy``);
* an initializer that raises breaks the pool: every task fails with InitializerError;
  so do workers that die while starting, again and again (``MAX_STARTUP_DEATHS`` in a row
  with no worker ready): a ProcessError (InitializerError if the initializer was running)
  whose cause is the child's own error, instead of respawning them forever
  (``_workers.startup_death_error``);
* a result (or exception) that pickled in the worker but does not unpickle here fails
  its task alone with a SerializationError; the report's other tasks are unaffected
  (``_reports``);
* when a worker is idle while another holds unstarted tasks behind a task that has run
  for a while (its started count has not moved for ``STALL_FACTOR`` times the measured
  task time, at least ``STALL_MIN_SECONDS``), those tasks are taken back and go to the
  idle worker (``Dispatcher._revoke`` in ``_dispatch``; race-free by a compare-and-swap,
  see ``_worker``).

No caller ever waits on something the manager cannot resolve: ``terminate`` and a broken
pool fail whatever is still pending. Results are delivered outside the engine's lock, so
a callback may submit more work.
"""

from __future__ import annotations

import collections
import itertools
import os
import select
import threading
import time

from ..._os import _log
from ..._os._procs import describe_exit
from ..._os._threads import mark_internal
from ..._os._wait import wait_readable
from ..._wire._remote_error import unpack_exception
from ...exceptions import InitializerError, ProcessError, TimeoutError, WorkerLostError
from .._contract import Batch, RetryPolicy, RunState, RunStateKeeper
from .._stats import PoolStatistics, WorkerStatistics
from .._worker import INIT_FAILED, LOG, READY, REPORT, RETIRE, WorkerOptions
from ._deadlines import enforce_deadlines, time_to_next_deadline
from ._dispatch import Dispatcher
from ._reports import UNREADABLE, decode_outcome, emit_log_record, load_messages
from ._workers import (
    COUNT_MASK,
    MAX_STARTUP_DEATHS,
    WorkerHandle,
    cause_of_exit,
    launch_worker,
    salvage,
    startup_death_error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from .._contract import Source

__all__ = ["PoolEngine"]

_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_pool_ids = itertools.count(1)


class PoolEngine(RunStateKeeper):
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
        self._workers: list[WorkerHandle] = []  # shared with the dispatcher: never rebound
        self._dispatcher = Dispatcher(self._workers, maxtasksperchild)
        self._state = RunState.RUN
        self._broken: BaseException | None = None
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
        self._by_fd: dict[int, WorkerHandle] = {}
        self.name = f"polyproc-pool-{next(_pool_ids)}"
        self._start_first_workers(processes)
        self._thread = threading.Thread(target=self._manage, name=f"{self.name}-manager",
                                        daemon=True)
        mark_internal(self._thread).start()

    # -- called by the Pool, in any thread ------------------------------------------
    @property
    def prefetch_depth(self) -> int:
        """Most batches a worker may hold; an executor asks for 2, so that a future stays
        cancellable until shortly before it runs."""
        return self._dispatcher.prefetch_depth

    @prefetch_depth.setter
    def prefetch_depth(self, depth: int) -> None:
        self._dispatcher.prefetch_depth = depth

    @property
    def size(self) -> int:
        """The number of worker processes the pool keeps."""
        return self._size

    def submit(self, batch: Batch) -> None:
        """Queue *batch*; send it at once if a worker has room."""
        with self._lock:
            if self._state is not RunState.RUN:
                raise ValueError("Pool not running")
            broken = self._broken
            if broken is None:
                pending = self._dispatcher.pending
                pending.append(batch)
                # With a backlog already queued, the workers were full: the manager sends
                # more as results free room. Looking again now and then keeps the workers
                # fed while a caller submits in a tight loop and holds the GIL.
                wake = False
                if len(pending) == 1:
                    self._dispatcher.dispatch()
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
                self._dispatcher.sources.append(source)
                self._dispatcher.dispatch()
        if broken is not None:
            source.fail(broken)
        self._wake()

    def close(self) -> None:
        """Accept no more work; workers exit once everything queued is done."""
        with self._lock:
            if self._state is RunState.RUN:
                self._state = RunState.CLOSE
            sources = list(self._dispatcher.sources)
        # join() waits for every input to be read: none may wait for its reader now.
        for source in sources:
            source.drain()
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
            queued = sum(batch.stop - batch.start for batch in self._dispatcher.pending)
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
        started: list[WorkerHandle] = []
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

    def _launch_worker(self) -> WorkerHandle:
        return launch_worker(self._ctx, self._initializer, self._initargs, self._options)

    def _register(self, worker: WorkerHandle) -> None:
        self._workers.append(worker)
        for fd in (worker.sock.fileno(), worker.process.sentinel):
            self._poller.register(fd, _READABLE)
            self._by_fd[fd] = worker

    # -- the manager thread ------------------------------------------------------------
    def _manage(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._state is RunState.TERMINATE:
                        break
                    self._dispatcher.dispatch()
                    if self._state is RunState.CLOSE and self._idle_forever():
                        break
                    timeout = time_to_next_deadline(self._workers)
                    stall = self._dispatcher.check_stalls()
                    if stall is not None and (timeout is None or stall < timeout):
                        timeout = stall
                events = self._poller.poll(
                    None if timeout is None else max(0, int(timeout * 1000) + 1)
                )
                deliveries: list[tuple[Any, ...]] = []
                exited: list[WorkerHandle] = []
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
                    enforce_deadlines(self._workers)
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
        return not self._dispatcher.pending and not self._dispatcher.sources and not any(
            w.outstanding for w in self._workers
        )

    def _receive(self, worker: WorkerHandle, deliveries: list[tuple[Any, ...]]) -> None:
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
        messages = load_messages(frames)
        with self._lock:
            for message in messages:
                self._on_message(worker, message, deliveries)

    def _receive_the_rest(self, worker: WorkerHandle, deliveries: list[tuple[Any, ...]]) -> None:
        """Read what a worker sent before it exited (it may have reported, then died)."""
        fd = worker.sock.fileno()
        while not worker.eof and wait_readable([fd], 0):
            try:
                frames = worker.sock.receive()
            except (EOFError, OSError):
                worker.eof = True
                return
            messages = load_messages(frames)
            with self._lock:
                for message in messages:
                    self._on_message(worker, message, deliveries)

    def _on_message(
        self, worker: WorkerHandle, message: tuple[Any, ...], deliveries: list[tuple[Any, ...]]
    ) -> None:
        tag = message[0]
        if tag == REPORT:
            self._startup_deaths = 0  # a worker ran tasks: the pool can start workers
            self._on_report(worker, message[1], message[2], deliveries)
        elif tag == LOG:
            deliveries.append((emit_log_record, message[1]))
        elif tag == RETIRE:
            worker.gone = True
            worker.retired = message[1]
        elif tag == INIT_FAILED:
            cause = unpack_exception(message[1])
            error = InitializerError(f"the pool's initializer raised in a worker: {cause!r}")
            error.__cause__ = cause
            self._break(error, deliveries)
        elif tag is UNREADABLE:
            _log.debug("dropped a worker's message: %r", message[1])
        else:
            raise ProcessError(f"pool protocol error: unknown message {tag!r}")

    def _on_report(
        self,
        worker: WorkerHandle,
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
            ok, values, error = decode_outcome(batch, first, sent_ok, sent_values, packed)
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
            previous = self._dispatcher.task_seconds
            self._dispatcher.task_seconds = (
                sample if previous is None else 0.7 * previous + 0.3 * sample
            )

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
            self._dispatcher.pending.appendleft(again)
            return
        self._failed += 1
        deliveries.append((batch.deliver, first, False, (values, error)))

    def _on_exit(self, worker: WorkerHandle, deliveries: list[tuple[Any, ...]]) -> None:
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
        started = worker.started[0] & COUNT_MASK
        lost = started - worker.reported_tasks  # started, never reported
        stage = worker.started[1]
        culprit, again = salvage(worker, lost)
        worker.outstanding.clear()
        self._dispatcher.pending.extendleft(reversed(again))
        self._restarts[cause_of_exit(worker, culprit, exitcode, self._maxtasks)] += 1
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
        self, worker: WorkerHandle, stage: int, exitcode: Any, deliveries: list[tuple[Any, ...]]
    ) -> None:
        """Count a worker that died before it was ready; break the pool after
        MAX_STARTUP_DEATHS in a row while no other worker is ready (a child that cannot
        start at all: respawning it would spin forever)."""
        self._startup_deaths += 1
        if self._startup_deaths < MAX_STARTUP_DEATHS:
            return
        if any(w.started[1] == READY for w in self._workers):
            return  # others run: this one was unlucky (killed while it started, say)
        error = startup_death_error(worker, stage, exitcode, self._startup_deaths,
                                    self._ctx.get_start_method())
        self._break(error, deliveries)

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
            pending, self._dispatcher.pending = self._dispatcher.pending, collections.deque()
            sources, self._dispatcher.sources = self._dispatcher.sources, collections.deque()
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
