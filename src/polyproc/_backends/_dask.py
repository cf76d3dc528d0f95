"""The Dask engine: a Pool whose batches run as tasks on a Dask ``distributed`` cluster.

``Pool(cluster="tcp://scheduler:8786")`` (or a ``distributed.Client``) gives the same Pool
API; only the engine differs. Each batch (already pickled by the Pool, so Dask treats it as
one opaque payload and never walks its items) becomes one Dask task running
``_pool._worker.run_batch`` on a worker; the outcomes come back through the future and are
delivered by a thread of this engine, never on Dask's event loop.

Where the semantics differ from local workers (documented in the README):

* a worker process lost mid-task: Dask reschedules the task on another worker; when the
  scheduler gives up (``KilledWorker``) the task fails with :class:`WorkerLostError`;
* ``task_timeout``: past its deadline (counted from submission) the task fails with
  ``TimeoutError`` and its future is cancelled, but Dask cannot interrupt a running task:
  that worker thread finishes it in the background;
* ``maxtasksperchild`` and ``max_worker_memory`` are local-worker notions (Dask has its
  own memory limits) and are refused; ``forward_logs`` uses Dask's log forwarding;
* ``imap`` keeps at most two batches per worker thread in flight, pulling the input as
  they complete: a huge generator is never materialised.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time

from .._pool._contract import (
    WAIT,
    RetryPolicy,
    RunState,
    RunStateKeeper,
    register_cluster_engine,
)
from .._pool._stats import PoolStatistics
from .._pool._worker import run_batch
from .._wire import _pickling
from .._wire._remote_error import unpack_exception
from ..exceptions import ProcessError, TimeoutError, WorkerLostError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .._pool._contract import Batch, Engine, Source

__all__ = ["DaskEngine"]

#: A batch should take at least this long on a worker, to pay for Dask's ~ms per task.
_TARGET_BATCH_SECONDS = 0.05
_MAX_TASKS_PER_BATCH = 1024
_CONNECT_TIMEOUT_S = 10
_MISSING = object()


def _run_remotely(
    data: bytes, buffers: list[bytes], start: int, stop: int, chunksize: int
) -> tuple[float, list[tuple[Any, ...]]]:
    """What a Dask worker runs for one batch: its outcomes, and how long they took."""
    import os

    began = time.perf_counter()
    kind, func, items = _pickling.loads(data, buffers)
    outcomes = run_batch(kind, func, items, start, stop, chunksize,
                         f"dask worker (pid {os.getpid()})")
    return time.perf_counter() - began, outcomes


class _Initializer:
    """A Dask worker plugin running the Pool's initializer on every worker, new ones too."""

    def __init__(self, initializer: Any, initargs: tuple[Any, ...]) -> None:
        self.initializer = initializer
        self.initargs = initargs
        self.name = f"polyproc-initializer-{id(self):x}"

    def setup(self, worker: Any) -> None:
        self.initializer(*self.initargs)


class DaskEngine(RunStateKeeper):
    """Batches of a Pool as tasks on a Dask cluster: an :class:`~.._pool._contract.Engine`."""

    def __init__(
        self,
        cluster: Any,
        processes: int | None,
        initializer: Any,
        initargs: tuple[Any, ...],
        options: Any,
        retries: int,
        retry_on: tuple[type[BaseException], ...],
    ) -> None:
        try:
            import distributed as _distributed
        except ImportError:
            raise ImportError(
                "Pool(cluster=...) runs on Dask, which is not installed: "
                "pip install 'polyproc[dask]'"
            ) from None
        distributed: Any = _distributed  # typed loosely: Dask is an optional dependency
        self._client: Any
        if isinstance(cluster, distributed.Client):
            self._client, self._own_client = cluster, False
        else:
            self._client = distributed.Client(cluster, set_as_default=False,
                                              timeout=_CONNECT_TIMEOUT_S)
            self._own_client = True
        threads = sum(w["nthreads"] for w in self._client.scheduler_info()["workers"].values())
        self._size = processes or max(1, threads)
        if options is not None and options.log_level is not None:
            self._client.forward_logging(level=options.log_level)
        if initializer is not None:
            self._client.register_plugin(_Initializer(initializer, tuple(initargs)))
        self._retry = RetryPolicy(retries, retry_on)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._state = RunState.RUN
        self._in_flight: dict[Any, Batch] = {}
        self._sources: collections.deque[Source] = collections.deque()
        self._task_seconds: float | None = None
        self._done = 0
        self._failed = 0
        self._keys = itertools.count()
        self.prefetch_depth = 2  # in-flight batches per worker thread, for imap
        self._deadlines = threading.Condition(self._lock)
        self._timeouts: dict[Any, BaseException] = {}  # future -> why the engine cancelled it
        self._finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._deliverer = threading.Thread(target=self._deliver_forever,
                                           name="polyproc-dask-deliver", daemon=True)
        self._deliverer.start()
        self._watchdog = threading.Thread(target=self._watch_deadlines,
                                          name="polyproc-dask-deadlines", daemon=True)
        self._watchdog.start()

    # -- the engine surface ------------------------------------------------------------
    @property
    def size(self) -> int:
        """The worker threads the pool counts on (the cluster's, unless given)."""
        return self._size

    def submit(self, batch: Batch) -> None:
        """Run *batch* on the cluster."""
        with self._lock:
            self.check_running()
            self._launch(batch)

    def submit_many(self, batches: Iterable[Batch]) -> None:
        """Run *batches* on the cluster, submitted in one request (a map's chunks)."""
        batches = list(batches)  # pickled by the caller's iterable: not under the lock
        with self._lock:
            self.check_running()
            batches = [b for b in batches if b.on_start is None or b.on_start()]
            if not batches:
                return
            keys = [f"polyproc-batch-{next(self._keys)}-{id(self):x}" for _ in batches]
            futures = self._client.map(
                _run_remotely,
                [b.data for b in batches],
                [[bytes(view) for view in b.buffers] for b in batches],
                [b.start for b in batches],
                [b.stop for b in batches],
                [b.chunksize for b in batches],
                key=keys,
                pure=False,
            )
            for future, batch in zip(futures, batches, strict=True):
                self._track(future, batch)

    def add_source(self, source: Source) -> None:
        """Pull batches from *source* as in-flight ones complete."""
        source.resume = self._refill
        with self._lock:
            self.check_running()
            self._sources.append(source)
        self._refill()

    def close(self) -> None:
        """Accept no more work."""
        with self._lock:
            if self._state is RunState.RUN:
                self._state = RunState.CLOSE
            self._idle.notify_all()
            sources = list(self._sources)
        # join() waits for every input to be read: none may wait for its reader now.
        for source in sources:
            source.drain()

    def terminate(self) -> None:
        """Cancel what runs, fail what has not completed, disconnect."""
        with self._lock:
            self._state = RunState.TERMINATE
            self._deadlines.notify_all()
            in_flight = list(self._in_flight.items())
            self._in_flight.clear()
            sources, self._sources = list(self._sources), collections.deque()
            self._idle.notify_all()
        error = ProcessError("the pool was terminated before this task completed")
        for future, batch in in_flight:
            future.cancel()
            batch.fail_unreported(error)
        for source in sources:
            source.fail(error)
        self._finished.put(None)
        if self._own_client:
            self._client.close()

    def join(self, timeout: float | None = None) -> None:
        """Wait until everything submitted has completed (after close or terminate).

        Raises:
            ValueError: the pool is still running.
        """
        if self._state is RunState.RUN:
            raise ValueError("Pool is still running")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._in_flight or self._sources:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._idle.wait(remaining)
        if self._state is RunState.CLOSE:
            self._finished.put(None)
            self._deliverer.join(timeout)
            if self._own_client:
                self._client.close()

    def statistics(self) -> PoolStatistics:
        """Calls done and failed, and what is queued (Dask keeps its own worker records)."""
        with self._lock:
            queued = sum(b.stop - b.start for b in self._in_flight.values())
        workers = len(self._client.scheduler_info().get("workers", {}))
        return PoolStatistics(workers=workers, tasks_done=self._done,
                              tasks_failed=self._failed, tasks_queued=queued, restarts=0)

    # -- running batches -----------------------------------------------------------------
    def _launch(self, batch: Batch) -> None:
        """Submit *batch* (under the lock), unless it was cancelled (an executor's future)."""
        if batch.on_start is not None and not batch.on_start():
            return
        buffers = [bytes(b) for b in batch.buffers]
        future: Any = self._client.submit(
            _run_remotely, batch.data, buffers, batch.start, batch.stop, batch.chunksize,
            key=f"polyproc-batch-{next(self._keys)}-{id(self):x}", pure=False,
        )
        self._track(future, batch)

    def _track(self, future: Any, batch: Batch) -> None:
        """Watch *future*, which runs *batch* (under the lock)."""
        if batch.timeout is not None:
            batch.deadline = time.monotonic() + batch.timeout
            self._deadlines.notify_all()
        self._in_flight[future] = batch
        future.add_done_callback(self._finished.put)

    def _refill(self) -> None:
        """Pull batches from the sources while fewer than the window are in flight."""
        window = self._size * self.prefetch_depth
        with self._lock:
            while (self._sources and self._state is not RunState.TERMINATE
                   and len(self._in_flight) < window):
                source = self._sources[0]
                try:
                    batch = source.next_batch(self._max_tasks())
                except BaseException as exc:  # the caller's iterable raised
                    self._sources.popleft()
                    source.fail(exc)
                    continue
                if batch is None:
                    self._sources.popleft()
                    continue
                if batch is WAIT:
                    break  # its results are unread: the reader resumes it
                self._launch(batch)
            self._idle.notify_all()

    def _max_tasks(self) -> int:
        estimate = self._task_seconds
        if estimate is None:
            return 1
        return max(1, min(_MAX_TASKS_PER_BATCH, int(_TARGET_BATCH_SECONDS / max(estimate, 1e-7))))

    def _deliver_forever(self) -> None:
        while True:
            futures = [self._finished.get()]
            while True:  # everything finished meanwhile, fetched in one request below
                try:
                    futures.append(self._finished.get_nowait())
                except queue.Empty:
                    break
            stop = None in futures
            futures = [f for f in futures if f is not None]
            values = self._gather([f for f in futures if f.status == "finished"])
            for future in futures:
                with self._lock:
                    batch = self._in_flight.get(future)
                if batch is not None:
                    self._settle(future, batch, values.get(future.key, _MISSING))
                with self._lock:  # only now: join() returns once results are delivered
                    self._in_flight.pop(future, None)
                    self._timeouts.pop(future, None)
                    self._idle.notify_all()
            self._refill()
            del futures, values
            if stop:
                return

    def _gather(self, futures: list[Any]) -> dict[Any, Any]:
        """The results of finished *futures* by key, in one request to the cluster (one
        ``result()`` each costs a round trip of milliseconds)."""
        if not futures:
            return {}
        try:
            return dict(zip((f.key for f in futures), self._client.gather(futures),
                            strict=True))
        except Exception:
            return {}  # one was cancelled meanwhile: each is settled on its own

    def _settle(self, future: Any, batch: Batch, value: Any = None) -> None:
        error: BaseException | None = None
        if value is not _MISSING and value is not None:
            self._deliver_outcomes(batch, *value)
            return
        if future.status == "finished":
            try:
                seconds, outcomes = future.result()
            except Exception as exc:  # cancelled in the meantime (terminate)
                error = exc
            else:
                self._deliver_outcomes(batch, seconds, outcomes)
                return
        if future.status == "cancelled" or error is not None:
            error = self._timeouts.get(future) or ProcessError(
                "the task was cancelled on the cluster"
            )
        else:
            error = self._cluster_error(batch, future.exception())
        for first in range(batch.start, batch.stop, batch.chunksize):
            self._fail_task(batch, first, [], error)

    def _deliver_outcomes(
        self, batch: Batch, seconds: float, outcomes: list[tuple[Any, ...]]
    ) -> None:
        tasks = sum(o[1] for o in outcomes) or 1
        sample = seconds / tasks
        previous = self._task_seconds
        self._task_seconds = sample if previous is None else 0.7 * previous + 0.3 * sample
        for first, _tasks, ok, values, packed in outcomes:
            self._done += len(values)
            if ok:
                batch.deliver(first, True, values)
            else:
                self._fail_task(batch, first, values, unpack_exception(packed))

    def _cluster_error(self, batch: Batch, exc: BaseException) -> BaseException:
        if type(exc).__name__ == "KilledWorker":
            lost = WorkerLostError(
                f"{batch.describe(batch.start, batch.stop - 1)} was lost: the Dask workers "
                f"running it died each time it was tried ({exc})"
            )
            lost.__cause__ = exc
            return lost
        return exc

    def _fail_task(self, batch: Batch, first: int, values: list[Any], error: BaseException) -> None:
        again = self._retry.retry(batch, first, error)
        if again is not None:
            with self._lock:
                if self._state is not RunState.TERMINATE:
                    self._launch(again)
                    return
        self._failed += 1
        batch.deliver(first, False, (values, error))

    def _watch_deadlines(self) -> None:
        with self._deadlines:
            while self._state is not RunState.TERMINATE:
                now = time.monotonic()
                nearest = None
                for future, batch in self._in_flight.items():
                    if batch.deadline is None:
                        continue
                    if now >= batch.deadline:
                        batch.deadline = None
                        self._timeouts[future] = TimeoutError(
                            f"{batch.describe(batch.start, batch.stop - 1)} did not finish "
                            f"within its task_timeout of {batch.timeout:g} s; its Dask task "
                            f"was cancelled (Dask cannot interrupt a running task: the worker "
                            f"finishes it in the background)"
                        )
                        future.cancel()
                    elif nearest is None or batch.deadline < nearest:
                        nearest = batch.deadline
                self._deadlines.wait(None if nearest is None else nearest - now)


def _make_engine(cluster: Any, processes: int | None, initializer: Any,
                 initargs: tuple[Any, ...], options: Any, retries: int,
                 retry_on: tuple[type[BaseException], ...]) -> Engine:
    # Typed as the contract, so that mypy checks DaskEngine against it.
    return DaskEngine(cluster, processes, initializer, initargs, options, retries, retry_on)


register_cluster_engine("dask", _make_engine)
