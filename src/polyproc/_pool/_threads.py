"""The thread engine behind ``ThreadPool``: the pool API, run by threads of this process.

Nothing is pickled (threads share memory), so a ThreadPool accepts objects a process
pool cannot send, as multiprocessing's does. A thread cannot be killed, so there is no
``task_timeout`` here.
"""

from __future__ import annotations

import queue
import threading

from .._os import _log
from ..exceptions import InitializerError, ProcessError
from ._contract import RetryPolicy, RunState, RunStateKeeper
from ._stats import PoolStatistics
from ._worker import APPLY, STARMAP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from ._contract import Batch, Source

__all__ = ["ThreadEngine"]

_STOP = None


class ThreadEngine(RunStateKeeper):
    """Worker threads fed from one queue: an :class:`~._contract.Engine`."""

    def __init__(
        self,
        ctx: Any,
        processes: int,
        initializer: Any,
        initargs: tuple[Any, ...],
        maxtasksperchild: int | None,
        options: Any = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._state = RunState.RUN
        self._retry = RetryPolicy(retries, retry_on)
        # Part of the Engine contract, unused here: a thread takes one batch at a time.
        self.prefetch_depth = 1
        self._initializer = initializer
        self._initargs = initargs
        self._done = 0  # updated by several threads: a statistic, not an exact ledger
        self._failed = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"polyproc-threadpool-{i}", daemon=True)
            for i in range(processes)
        ]
        for thread in self._threads:
            thread.start()
            _log.debug("added worker")

    @property
    def size(self) -> int:
        """The number of worker threads."""
        return len(self._threads)

    def statistics(self) -> PoolStatistics:
        """Counters of a thread pool (threads are never restarted)."""
        return PoolStatistics(
            workers=len(self._threads),
            tasks_done=self._done,
            tasks_failed=self._failed,
            tasks_queued=self._queue.qsize(),
            restarts=0,
        )

    def submit(self, batch: Batch) -> None:
        """Queue *batch* for the next free thread."""
        with self._lock:
            self.check_running()
            self._queue.put(batch)

    def submit_many(self, batches: Iterable[Batch]) -> None:
        """Queue each of *batches* as it comes."""
        for batch in batches:
            self.submit(batch)

    def add_source(self, source: Source) -> None:
        """Feed a lazy source: batches are read as threads free up."""
        with self._lock:
            self.check_running()
            self._queue.put(source)

    def close(self) -> None:
        """Accept no more work; threads exit once the queue is done."""
        with self._lock:
            if self._state is RunState.RUN:
                self._state = RunState.CLOSE
                for _ in self._threads:
                    self._queue.put(_STOP)

    def terminate(self) -> None:
        """Fail what is still queued and let the threads finish their current task."""
        with self._lock:
            self._state = RunState.TERMINATE
        error = ProcessError("the pool was terminated before this task completed")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                self._fail(item, error)
        for _ in self._threads:
            self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads to exit after close; return at once after terminate.

        A thread cannot be stopped: after terminate, threads still inside a task finish it
        in the background (they are daemon threads), as in multiprocessing.
        """
        if self._state is RunState.RUN:
            raise ValueError("Pool is still running")
        if self._state is RunState.TERMINATE:
            return
        for thread in self._threads:
            thread.join(timeout)

    @staticmethod
    def _fail(item: Any, error: BaseException) -> None:
        if hasattr(item, "deliver"):
            item.deliver(item.start, False, ([], error))
        else:
            item.fail(error)

    def _work(self) -> None:
        broken: BaseException | None = None
        batch: Any = None
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:
                broken = InitializerError(f"the pool's initializer raised: {exc!r}")
                broken.__cause__ = exc
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if broken is not None:
                self._fail(item, broken)
                continue
            if not hasattr(item, "deliver"):  # a lazy source: take one batch, requeue it
                try:
                    batch = item.next_batch()
                except BaseException as exc:
                    item.fail(exc)
                    continue
                if batch is None:
                    continue
                self._queue.put(item)
                item = batch
            if item.on_start is None or item.on_start():
                self._run(item)
            item = batch = None  # keep no task's arguments or results alive (bpo-29861)

    def _run(self, batch: Batch) -> None:
        kind, func, items = batch.data  # a tuple here: ThreadPool does not pickle
        results: list[Any] = []
        try:
            if kind == APPLY:
                args, kwargs = items
                results.append(func(*args, **kwargs))
            elif kind == STARMAP:
                results.extend(func(*args) for args in items)
            else:
                results.extend(func(item) for item in items)
        except BaseException as exc:
            self._done += len(results)
            again = self._retry.retry(batch, batch.start, exc)
            if again is not None:
                self._run(again)  # at once, by this thread: the queue may be closed
                return
            self._failed += 1
            batch.deliver(0, False, (results, exc))
        else:
            self._done += len(results)
            batch.deliver(0, True, results)
