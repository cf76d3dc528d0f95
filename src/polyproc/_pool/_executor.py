"""``PoolExecutor``: the pool behind the ``concurrent.futures.Executor`` interface.

Futures are the standard ``concurrent.futures.Future``, so ``asyncio``
(``loop.run_in_executor``, ``asyncio.wrap_future``) and ``concurrent.futures.wait`` /
``as_completed`` accept them. What the pool adds holds here too: a dead worker fails only
its future (WorkerLostError), ``task_timeout`` fails a stuck one with TimeoutError, and
the pool goes on (where the standard ProcessPoolExecutor breaks entirely).

A future stays *pending* until a worker takes its task, so ``cancel()`` works until then
and ``shutdown(cancel_futures=True)`` cancels everything not yet started.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
import weakref

from ._pool import Pool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

__all__ = ["PoolExecutor"]


class PoolExecutor(concurrent.futures.Executor):
    """An executor of *max_workers* processes (``os.cpu_count()`` by default).

    *mp_context* picks the start method; *initializer*, *initargs* and
    *max_tasks_per_child* are those of ``ProcessPoolExecutor``; *task_timeout* (seconds
    per call) and *cluster* (a Dask scheduler's address: run on that cluster) are
    polyproc's.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        cluster: Any = None,
    ) -> None:
        self._pool = Pool(
            max_workers, initializer, initargs, max_tasks_per_child, mp_context,
            task_timeout=task_timeout, cluster=cluster,
        )
        # One task queued behind the running one, as concurrent.futures keeps: the rest stay
        # pending, so cancel() and shutdown(cancel_futures=True) can still reach them.
        self._pool._limit_prefetch(2)
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``.

        Raises:
            RuntimeError: the executor is shut down.
            SerializationError: *fn* or an argument cannot be pickled.
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._pending.add(future)

        def start() -> bool:
            with self._lock:
                self._pending.discard(future)
            return future.set_running_or_notify_cancel()

        def settle(success: bool, value: Any) -> None:
            if not future.running() and not future.set_running_or_notify_cancel():
                return  # cancelled before it ran (a broken or terminated pool)
            if success:
                future.set_result(value)
            else:
                future.set_exception(value)

        self._pool._apply(
            fn,
            args,
            kwargs,
            lambda value: settle(True, value),
            lambda exc: settle(False, exc),
            None,
            start,
        )
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[Any]:
        """``fn`` over the *iterables*, in order, as ``Executor.map``.

        With *buffersize* (as in Python 3.14), at most that many calls are submitted
        ahead of the results taken, so an endless input works; by default every call is
        submitted at once. *chunksize* is accepted and ignored, as by thread executors.

        Raises:
            ValueError: *buffersize* is not None or an int >= 1.
            RuntimeError: the executor is shut down.
        """
        if buffersize is None:
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)
        if type(buffersize) is not int or buffersize < 1:
            raise ValueError(f"buffersize must be None or an int >= 1, not {buffersize!r}")
        end = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables, strict=False)
        futures = collections.deque(
            self.submit(fn, *args) for args in itertools.islice(calls, buffersize)
        )
        # Only a weak reference in the generator: dropping the executor shuts it down.
        owner = weakref.ref(self)

        def results() -> Iterator[Any]:
            try:
                while futures:
                    executor = owner()
                    args = next(calls, None) if executor is not None else None
                    if args is not None:
                        futures.append(executor.submit(fn, *args))  # type: ignore[union-attr]
                    del executor
                    future = futures.popleft()
                    remaining = None if end is None else end - time.monotonic()
                    try:
                        yield future.result(remaining)
                    finally:
                        future.cancel()
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more work; with *cancel_futures*, cancel what has not started."""
        with self._lock:
            self._shutdown = True
            pending: set[concurrent.futures.Future[Any]] = set()
            if cancel_futures:
                pending, self._pending = self._pending, set()
        for future in pending:
            future.cancel()
        self._pool.close()
        if wait:
            self._pool.join()
