"""The local pool engine: worker processes and the one thread that manages them.

Data flow::

    caller ── submit(batch) ──> pending deque ──┐            ┌── worker 1 (own pipe)
    imap   ── add_source(gen) ─> sources ───────┤  manager   ├── worker 2
                                                 └─ thread ──┤   ...
    result objects <── deliver(outcome) <── results, deaths, └── worker N
                                            deadlines

Each worker has its own duplex pipe, so the manager always knows which batches a worker
holds: the one it runs (the head of ``outstanding``) and at most one prefetched behind it.
The manager thread blocks in a single ``wait`` on the workers' pipes, their sentinels (a
pidfd that becomes readable when the process ends) and a wake-up pipe, with a timeout
set by the nearest task deadline. From there:

* a result completes the head batch of that worker;
* a sentinel without a result means the worker died: the batch it ran fails with a
  WorkerLostError naming the task and how the worker died, a prefetched batch that never
  started goes back to the queue, and a new worker takes its place;
* a deadline that passes kills the worker running that batch (SIGKILL); the batch fails
  with TimeoutError and the worker is replaced like a dead one;
* an initializer that raises breaks the pool: every task fails with InitializerError.

No caller ever waits on something the manager cannot resolve: ``terminate`` and a broken
pool fail whatever is still pending.
"""

from __future__ import annotations

import collections
import itertools
import os
import select
import signal
import threading
import time

from .._os._procs import describe_exit
from .._wire._connection import make_pipe
from .._wire._remote_error import unpack_exception
from ..exceptions import InitializerError, ProcessError, TimeoutError, WorkerLostError
from ._stats import PoolStatistics, WorkerStatistics
from ._worker import DONE, HEADER, INIT_FAILED, worker_main

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class Source(Protocol):
        """A lazy stream of batches (imap): pulled only when a worker has room."""

        def next_batch(self) -> Batch | None:
            """The next batch, or None when the input is exhausted."""

        def fail(self, error: BaseException) -> None:
            """Fail everything not yet delivered (the input raised, or the pool ended)."""

__all__ = ["Batch", "PoolEngine"]

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
_PREFETCH_LIMIT_BYTES = 64 * 1024  # larger batches wait for an idle worker
_PREFETCH_DEPTH = 8  # batches a worker may hold: the one it runs and the next ones
_READABLE = select.POLLIN | select.POLLHUP | select.POLLERR
_pool_ids = itertools.count(1)


class Batch:
    """One message to a worker: a call, or a chunk of calls of one function.

    *deliver(success, values_or_exception)* receives the outcome: on success the list of
    results; on failure ``(results_before_the_failure, exception)``.
    """

    __slots__ = ("data", "deadline", "deliver", "describe", "id", "on_start", "size", "timeout")

    def __init__(
        self,
        data: Any,
        deliver: Callable[[bool, Any], None],
        describe: str,
        size: int,
        timeout: float | None,
    ) -> None:
        self.id = 0
        # The pickled (kind, func, items) for worker processes; the tuple itself for threads.
        self.data = data
        self.deliver = deliver
        self.describe = describe
        self.size = size
        self.timeout = timeout
        self.deadline: float | None = None
        # Called just before the batch goes to a worker; False drops it (a cancelled future).
        self.on_start: Callable[[], bool] | None = None


class _Worker:
    __slots__ = (
        "born",
        "busy_seconds",
        "busy_since",
        "conn",
        "done",
        "gone",
        "outstanding",
        "process",
        "sent",
        "timed_out",
    )

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn
        self.outstanding: collections.deque[Batch] = collections.deque()
        self.sent = 0
        self.timed_out: Batch | None = None
        # Its pipe broke: it is dying, and takes nothing more until its sentinel says so.
        self.gone = False
        # For statistics(): calls completed, and time spent running batches.
        self.done = 0
        self.born = time.monotonic()
        self.busy_since: float | None = None
        self.busy_seconds = 0.0


class PoolEngine:
    """Worker processes of one context, fed and watched by a manager thread."""

    def __init__(
        self,
        ctx: Any,
        processes: int,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        maxtasksperchild: int | None,
    ) -> None:
        self._ctx = ctx
        self._size = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasks = maxtasksperchild
        self._lock = threading.Lock()
        self._pending: collections.deque[Batch] = collections.deque()
        self._sources: collections.deque[Source] = collections.deque()
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._state = RUN
        self._broken: BaseException | None = None
        # Batches a worker may hold (the one it runs and the next): deep for throughput; an
        # executor asks for 2, so that a future stays cancellable until shortly before it runs.
        self.prefetch_depth = _PREFETCH_DEPTH
        self._done = 0
        self._failed = 0
        self._restarts: collections.Counter[str] = collections.Counter()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # One poller for the pool's life: the wake-up pipe, and each worker's pipe and
        # sentinel, registered when the worker starts and dropped when it ends.
        self._poller = select.poll()
        self._poller.register(self._wake_r, _READABLE)
        self._by_fd: dict[int, _Worker] = {}
        self.name = f"polyproc-pool-{next(_pool_ids)}"
        self._start_first_workers(processes)
        self._thread = threading.Thread(target=self._manage, name=f"{self.name}-manager",
                                        daemon=True)
        self._thread.start()

    # -- called by the Pool, in any thread ------------------------------------------
    @property
    def size(self) -> int:
        """The number of worker processes the pool keeps."""
        return self._size

    def check_running(self) -> None:
        """Raise ValueError unless the pool accepts work (as multiprocessing does)."""
        if self._state != RUN:
            raise ValueError("Pool not running")

    def submit(self, batch: Batch) -> None:
        """Queue *batch* for the next idle worker."""
        with self._lock:
            self.check_running()
            if self._broken is not None:
                batch.deliver(False, ([], self._broken))
                return
            batch.id = next(self._ids)
            self._pending.append(batch)
        self._wake()

    def add_source(self, source: Source) -> None:
        """Queue a lazy stream of batches; the manager pulls from it as workers free up."""
        with self._lock:
            self.check_running()
            self._sources.append(source)
        self._wake()

    def close(self) -> None:
        """Accept no more work; workers exit once everything queued is done."""
        with self._lock:
            if self._state == RUN:
                self._state = CLOSE
        self._wake()

    def terminate(self) -> None:
        """Stop now: kill the workers and fail whatever has not completed."""
        with self._lock:
            self._state = TERMINATE
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the manager thread (and so every worker) to finish.

        Raises:
            ValueError: the pool is still running (call close or terminate first).
        """
        if self._state == RUN:
            raise ValueError("Pool is still running")
        self._thread.join(timeout)

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool's counters (see PoolStatistics)."""
        now = time.monotonic()
        per_worker = []
        for w in list(self._workers):
            busy = w.busy_seconds + (now - w.busy_since if w.busy_since is not None else 0.0)
            per_worker.append(
                WorkerStatistics(w.process.pid, w.done, busy, max(0.0, now - w.born - busy))
            )
        with self._lock:
            queued = sum(batch.size for batch in self._pending)
        return PoolStatistics(
            workers=len(per_worker),
            tasks_done=self._done,
            tasks_failed=self._failed,
            tasks_queued=queued,
            restarts=sum(self._restarts.values()),
            restart_causes=dict(self._restarts),
            per_worker=tuple(per_worker),
        )

    def worker_pids(self) -> list[int]:
        """The pids of the current workers (for tests and statistics)."""
        return [w.process.pid for w in list(self._workers)]

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake, or shutting down

    # -- the manager thread ------------------------------------------------------------
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
                worker.conn.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        for worker in started:
            self._register(worker)

    def _launch_worker(self) -> _Worker:
        parent_end, child_end = make_pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(child_end, self._initializer, self._initargs, self._maxtasks),
            name=f"{self.name}-worker",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_end.close()
        return _Worker(process, parent_end)

    def _register(self, worker: _Worker) -> None:
        self._workers.append(worker)
        for fd in (worker.conn.fileno(), worker.process.sentinel):
            self._poller.register(fd, _READABLE)
            self._by_fd[fd] = worker

    def _start_worker(self) -> None:
        self._register(self._launch_worker())

    def _manage(self) -> None:
        try:
            while True:
                with self._lock:
                    state = self._state
                if state == TERMINATE:
                    break
                self._dispatch()
                if state == CLOSE and self._idle_forever():
                    break
                self._wait_and_handle()
        finally:
            self._shut_down()

    def _idle_forever(self) -> bool:
        return not self._pending and not self._sources and not any(
            w.outstanding for w in self._workers
        )

    def _wait_and_handle(self) -> None:
        timeout = self._time_to_next_deadline()
        events = self._poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
        exited: list[_Worker] = []
        for fd, _event in events:
            if fd == self._wake_r:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            worker = self._by_fd.get(fd)
            if worker is None:
                continue
            self._receive(worker)  # results sent just before an exit come first
            if fd == worker.process.sentinel:
                exited.append(worker)
        for worker in exited:
            self._on_exit(worker)
        self._enforce_deadlines()

    def _receive(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while conn.poll(0):
                self._on_message(worker, conn.recv())
        except (EOFError, OSError):
            worker.gone = True  # it is dying; its sentinel will say so

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        tag, batch_id = message[0], message[1]
        if tag == INIT_FAILED:
            cause = unpack_exception(message[3])
            error = InitializerError(f"the pool's initializer raised in a worker: {cause!r}")
            error.__cause__ = cause
            self._break(error)
            return
        batch = worker.outstanding.popleft()
        if batch.id != batch_id:  # cannot happen with one pipe per worker; be loud if it does
            raise ProcessError(f"pool protocol error: got batch {batch_id}, expected {batch.id}")
        self._end_busy(worker)
        if tag == DONE:
            worker.done += batch.size
            self._done += batch.size
            batch.deliver(True, message[2])
        else:
            done = len(message[2])
            worker.done += done
            self._done += done
            self._failed += 1
            batch.deliver(False, (message[2], unpack_exception(message[3])))
        if worker.outstanding:
            self._begin(worker, worker.outstanding[0])

    def _on_exit(self, worker: _Worker) -> None:
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        for fd in (worker.conn.fileno(), worker.process.sentinel):
            self._poller.unregister(fd)
            del self._by_fd[fd]
        worker.process.join(5)
        exitcode = worker.process.exitcode
        pid = worker.process.pid
        worker.conn.close()
        running = worker.outstanding.popleft() if worker.outstanding else None
        # A prefetched batch never started: it goes back to the front of the queue.
        with self._lock:
            self._pending.extendleft(reversed(worker.outstanding))
        worker.outstanding.clear()
        self._restarts[self._cause_of_exit(worker, running, exitcode)] += 1
        if running is not None and self._broken is None:
            self._failed += 1
            if worker.timed_out is running:
                error: BaseException = TimeoutError(
                    f"{running.describe} did not finish within its task_timeout of "
                    f"{running.timeout:g} s; the pool killed its worker (pid {pid}) and "
                    f"replaced it"
                )
            else:
                error = WorkerLostError(
                    f"{running.describe} was lost: its worker (pid {pid}) "
                    f"{describe_exit(exitcode)}; the pool replaced the worker"
                )
            running.deliver(False, ([], error))
        if self._state != TERMINATE and self._broken is None:
            self._start_worker()

    def _cause_of_exit(self, worker: _Worker, running: Batch | None, exitcode: Any) -> str:
        if running is not None and worker.timed_out is running:
            return "task_timeout"
        if running is None and self._maxtasks is not None and worker.sent >= self._maxtasks:
            return "maxtasksperchild"
        if isinstance(exitcode, int) and exitcode < 0:
            try:
                return signal.Signals(-exitcode).name
            except ValueError:
                return f"signal {-exitcode}"
        return f"exit code {exitcode}"

    def _dispatch(self) -> None:
        # Round by round: every worker gets its next batch before any gets one more, so a
        # few long tasks spread over the workers instead of queueing behind each other.
        for depth in range(1, self.prefetch_depth + 1):
            for worker in self._workers:
                if len(worker.outstanding) >= depth or not self._has_room(worker):
                    continue
                batch = self._next_batch()
                if batch is None:
                    return
                self._send(worker, batch)

    def _has_room(self, worker: _Worker) -> bool:
        if worker.gone or worker.timed_out is not None:
            return False
        if self._maxtasks is not None and worker.sent >= self._maxtasks:
            return False
        if not worker.outstanding:
            return True
        # Prefetch a few small batches, so a worker never waits for the manager between
        # tasks; not behind a batch with a deadline, whose clock starts when it runs.
        return (
            len(worker.outstanding) < self.prefetch_depth
            and all(batch.timeout is None for batch in worker.outstanding)
        )

    def _next_batch(self) -> Batch | None:
        while True:
            batch = self._next_queued_batch()
            if batch is None or batch.on_start is None or batch.on_start():
                return batch

    def _next_queued_batch(self) -> Batch | None:
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            while self._sources:
                source = self._sources[0]
                try:
                    batch = source.next_batch()
                except BaseException as exc:  # the caller's iterable raised
                    self._sources.popleft()
                    source.fail(exc)
                    continue
                if batch is None:
                    self._sources.popleft()
                    continue
                batch.id = next(self._ids)
                return batch
        return None

    def _send(self, worker: _Worker, batch: Batch) -> bool:
        """Send *batch* to *worker*; False (batch requeued) if it cannot take it now."""
        if worker.outstanding and len(batch.data) > _PREFETCH_LIMIT_BYTES:
            with self._lock:  # too big to sit in a busy worker's pipe: wait for an idle one
                self._pending.appendleft(batch)
            return False
        try:
            worker.conn.send_bytes(HEADER.pack(batch.id) + batch.data)
        except OSError:
            # The worker is dying: requeue the batch and send it nothing more (a retry here
            # would spin, and the manager would never get back to notice the death).
            worker.gone = True
            with self._lock:
                self._pending.appendleft(batch)
            return False
        worker.sent += 1
        worker.outstanding.append(batch)
        if len(worker.outstanding) == 1:
            self._begin(worker, batch)
        return True

    @staticmethod
    def _begin(worker: _Worker, batch: Batch) -> None:
        """*batch* is now the one *worker* runs: start its deadline and the busy clock."""
        now = time.monotonic()
        worker.busy_since = now
        if batch.timeout is not None:
            batch.deadline = now + batch.timeout

    @staticmethod
    def _end_busy(worker: _Worker) -> None:
        if worker.busy_since is not None:
            worker.busy_seconds += time.monotonic() - worker.busy_since
            worker.busy_since = None

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

    def _break(self, error: BaseException) -> None:
        self._broken = error
        for worker in self._workers:
            for batch in worker.outstanding:
                batch.deliver(False, ([], error))
            worker.outstanding.clear()
        self._fail_queued(error)

    def _fail_queued(self, error: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, collections.deque()
            sources, self._sources = self._sources, collections.deque()
        for batch in pending:
            batch.deliver(False, ([], error))
        for source in sources:
            source.fail(error)

    def _shut_down(self) -> None:
        terminated = self._state == TERMINATE
        error = ProcessError("the pool was terminated before this task completed")
        for worker in self._workers:
            if terminated:
                worker.process.kill()
            else:
                try:
                    worker.conn.send_bytes(b"")
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(None if not terminated else 5)
            for batch in worker.outstanding:
                batch.deliver(False, ([], error))
            worker.conn.close()
        self._workers.clear()
        self._fail_queued(error)
        os.close(self._wake_r)
        os.close(self._wake_w)
