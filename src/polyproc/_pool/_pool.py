"""``Pool``: multiprocessing's pool API over an :class:`~._contract.Engine`.

What the caller gets beyond the standard library:

* a worker that dies (SIGKILL, segfault, the OOM killer) fails only the task it ran, with
  a :class:`~polyproc.exceptions.WorkerLostError` naming the task and the cause, and the
  pool replaces the worker: no ``get`` waits forever;
* ``task_timeout=`` (seconds per call, on the Pool and on every submitting method) kills
  a worker stuck past it; that task fails with ``TimeoutError`` and the rest go on;
* an initializer that raises fails the tasks with
  :class:`~polyproc.exceptions.InitializerError` instead of restarting workers forever;
* an argument that cannot be pickled raises at the call (``apply_async``, ``map``...),
  naming it; one in a lazily consumed ``imap`` input fails that item;
* lambdas and closures work as functions under every start method;
* ``terminate`` fails whatever has not completed instead of leaving it pending.
"""

from __future__ import annotations

import itertools
import os
import warnings
import weakref

from .._os import _log
from .._process._finalize import Finalize
from .._process._state import runtime
from .._wire import _pickling
from ..exceptions import TimeoutError, WorkerLostError
from ._contract import WAIT, Batch, RunState, cluster_engine
from ._local import PoolEngine
from ._progress import ProgressTracker
from ._results import ApplyResult, IMapIterator, IMapUnorderedIterator, MapResult
from ._stats import PoolStatistics
from ._worker import APPLY, MAP, STARMAP, WorkerOptions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

    from ._contract import Engine

__all__ = ["Pool"]

# A global, not RunState.RUN, in __del__: at interpreter exit the module's globals may be
# None already, and a pool collected then must not raise (the comparison is just false).
_RUN = RunState.RUN

_MAX_DESCRIBED_ARGS = 60
#: Buffers (arrays, bytearrays, bytes) this big or bigger travel in shared memory.
OUT_OF_BAND_BYTES = 64 * 1024
#: imap's default read-ahead: this many batches per worker, a batch being the number of
#: tasks the engine groups (one for slow tasks, up to MAX_TASKS_PER_BATCH for quick ones).
#: Counted so, quick tasks keep the engine's batching and prefetch (32 batches of 64 tiny
#: tasks are about the two milliseconds of work the engine queues per worker; a smaller
#: window measurably slows imap of tiny tasks), slow ones read a few dozen ahead.
READ_AHEAD_BATCHES_PER_WORKER = 32
#: A paused input goes on once the tasks read ahead fall to this share of the window.
RESUME_FRACTION = 0.5


def _name_of(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def _describe_call(func: Any, args: tuple[Any, ...]) -> str:
    text = repr(args)
    if len(text) > _MAX_DESCRIBED_ARGS:
        text = text[: _MAX_DESCRIBED_ARGS - 3] + "..."
    return f"task {_name_of(func)}{text}"


_NO_KEYWORDS: dict[str, Any] = {}


class _CallDescription:
    """Names one ``apply_async`` call in error messages (made into text only if needed)."""

    __slots__ = ("args", "func")

    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args

    def __call__(self, first: int, last: int) -> str:
        return _describe_call(self.func, self.args)



def _check_buffersize(buffersize: int | None) -> int | None:
    if buffersize is not None and (type(buffersize) is not int or buffersize < 1):
        raise ValueError(f"buffersize must be None or an int >= 1, not {buffersize!r}")
    return buffersize


def _check_timeout(task_timeout: float | None) -> float | None:
    if task_timeout is not None and not task_timeout > 0:
        raise ValueError(f"task_timeout must be a positive number of seconds, not {task_timeout!r}")
    return task_timeout


class Pool:
    """A pool of worker processes, as ``multiprocessing.Pool``.

    *processes* defaults to ``os.cpu_count()``; *initializer(\\*initargs)* runs in each
    worker at start; a worker is replaced after *maxtasksperchild* tasks; *context* picks
    the start method (default: the default context).

    polyproc's extensions, all keyword-only:

    * *task_timeout*: the default time limit of every call, in seconds;
    * *retries* and *retry_on*: a task that fails with one of the *retry_on* exceptions
      (by default a lost worker or a timeout; add your own exception types to retry
      those too) runs again, up to *retries* more times;
    * *max_worker_memory*: bytes of resident memory after which a worker is replaced
      once its current task is done;
    * *forward_logs*: records logged in the workers (at the parent's root logger level and
      above) are handed to the parent's handlers;
    * *cluster*: the address of a Dask scheduler (``"tcp://host:8786"``) or a
      ``distributed.Client``: the pool's tasks run on that cluster instead of local
      workers (``pip install 'polyproc[dask]'``); see ``polyproc._backends._dask`` for
      where the semantics differ.

    Raises:
        ValueError: *processes* < 1, a non-positive *task_timeout* or
            *max_worker_memory*, or a negative *retries*.
        TypeError: *initializer* is not callable, or *retry_on* holds a non-exception.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        task_timeout: float | None = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (WorkerLostError, TimeoutError),
        max_worker_memory: int | None = None,
        forward_logs: bool = False,
        cluster: Any = None,
    ) -> None:
        if processes is None and cluster is None:
            processes = os.cpu_count() or 1
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if context is None:
            context = runtime.default_context()
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {retries!r}")
        retry_on = tuple(retry_on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise TypeError(f"retry_on must be a tuple of exception types, not {retry_on!r}")
        if max_worker_memory is not None and not max_worker_memory > 0:
            raise ValueError(
                f"max_worker_memory must be a positive number of bytes, not {max_worker_memory!r}"
            )
        log_level = None
        if forward_logs:
            import logging

            log_level = logging.getLogger().getEffectiveLevel()
        self._task_timeout = _check_timeout(task_timeout)
        options = WorkerOptions(maxtasksperchild, max_worker_memory, log_level, OUT_OF_BAND_BYTES)
        self._engine: Engine
        if cluster is not None:
            if maxtasksperchild is not None or max_worker_memory is not None:
                raise ValueError(
                    "maxtasksperchild and max_worker_memory apply to local workers, not to "
                    "a cluster's (Dask manages its workers' memory itself)"
                )
            self._engine = cluster_engine("dask")(
                cluster, processes, initializer, tuple(initargs), options, retries, retry_on
            )
        else:
            self._engine = self._make_engine(
                context, processes, initializer, tuple(initargs), maxtasksperchild, options,
                retries, retry_on,
            )
        self._processes = self._engine.size
        # One encoder for every batch to keep. Not the bound method: the pool would then
        # refer to itself, live on until the cyclic garbage collector runs, and be
        # finalized late (the standard library's is finalized as soon as it is dropped).
        self._encoder = _WeakEncoder(self)
        # As in multiprocessing: the pool is torn down when it is garbage collected or,
        # at the latest, at exit (before the children are joined), and the teardown logs.
        self._terminate = Finalize(
            self, _terminate_pool, args=(self._engine,), exitpriority=15
        )

    def _make_engine(self, *args: Any) -> Engine:
        """The engine of a pool without a cluster (typed as the contract: mypy checks
        that PoolEngine keeps it)."""
        return PoolEngine(*args)

    def _encode(self, payload: tuple[Any, ...], context: str) -> tuple[Any, Any]:
        """What travels to a worker: the pickled payload and its out-of-band buffers
        (raises here if it cannot be pickled)."""
        kind, func, items = payload
        # Pickle keeps bytes in band: wrap the big ones it will meet at the top level.
        if kind == APPLY:
            for arg in items[0]:
                if type(arg) is bytes and len(arg) >= OUT_OF_BAND_BYTES:
                    wrapped = _pickling.wrap_large_bytes(items[0], OUT_OF_BAND_BYTES)
                    payload = (kind, func, (tuple(wrapped), items[1]))
                    break
        elif items and type(items[0]) is bytes:
            payload = (kind, func, _pickling.wrap_large_bytes(items, OUT_OF_BAND_BYTES))
        return _pickling.dumps_with_buffers(payload, OUT_OF_BAND_BYTES, context=context)

    # -- submitting ------------------------------------------------------------------
    def _timeout(self, task_timeout: float | None) -> float | None:
        return self._task_timeout if task_timeout is None else _check_timeout(task_timeout)

    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> Any:
        """Call *func(\\*args, \\*\\*kwds)* in a worker and return its result."""
        return self.apply_async(func, args, kwds, task_timeout=task_timeout).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
    ) -> ApplyResult:
        """Call *func(\\*args, \\*\\*kwds)* in a worker; return an ApplyResult at once.

        Raises:
            ValueError: the pool is closed or terminated.
            SerializationError: *func* or an argument cannot be pickled.
        """
        return self._apply(func, args, kwds, callback, error_callback, task_timeout, None)

    def _apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any],
        kwds: Mapping[str, Any] | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        task_timeout: float | None,
        on_start: Callable[[], bool] | None,
    ) -> ApplyResult:
        """apply_async, plus *on_start*: called before the task is sent to a worker; if
        it returns False the task is dropped unsent (a cancelled future)."""
        # The hot path of many small calls: as few objects per call as it takes (each one
        # feeds the garbage collector).
        self._engine.check_running()
        if type(args) is not tuple:
            args = tuple(args)
        kwds = dict(kwds) if kwds else _NO_KEYWORDS
        timeout = self._timeout(task_timeout)
        payload = (APPLY, func, (args, kwds))
        data, buffers = self._encode(payload, "Pool.apply_async")
        result = ApplyResult(callback, error_callback)
        batch = Batch(data, result._deliver, _CallDescription(func, args), 1, timeout,
                      buffers=buffers, encode=self._encoder, payload=payload)
        batch.on_start = on_start
        self._engine.submit(batch)
        return result

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> list[Any]:
        """``list(map(func, iterable))``, computed by the workers, in order.

        *progress* (a polyproc extension): True draws a progress bar (tqdm's if installed,
        else a text bar on stderr); a tqdm-compatible object is updated instead.
        """
        values: list[Any] = self._map_async(
            func, iterable, MAP, chunksize, None, None, task_timeout, progress
        ).get()
        return values

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> MapResult:
        """Like :meth:`map`, returning a MapResult at once."""
        return self._map_async(
            func, iterable, MAP, chunksize, callback, error_callback, task_timeout, progress
        )

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> list[Any]:
        """Like :meth:`map`, calling ``func(*item)`` for each item."""
        values: list[Any] = self._map_async(
            func, iterable, STARMAP, chunksize, None, None, task_timeout, progress
        ).get()
        return values

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> MapResult:
        """Like :meth:`starmap`, returning a MapResult at once."""
        return self._map_async(
            func, iterable, STARMAP, chunksize, callback, error_callback, task_timeout, progress
        )

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        kind: int,
        chunksize: int | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        task_timeout: float | None,
        progress: Any = False,
    ) -> MapResult:
        self._engine.check_running()
        # Chunks are slices (copies) of the list: a list given by the caller is not
        # copied a second time.
        items = iterable if type(iterable) is list else list(iterable)
        if kind == STARMAP:
            items = [tuple(args) for args in items]
        timeout = self._timeout(task_timeout)
        if chunksize is None:
            # Four times the standard library's count of chunks: the first ones start
            # while the rest are pickled, and the last ones finish close together.
            chunksize, extra = divmod(len(items), self._processes * 16)
            chunksize += 1 if extra else 0
        chunksize = max(1, chunksize)
        context = "Pool.starmap" if kind == STARMAP else "Pool.map"
        result = MapResult(callback, error_callback)
        tracker = ProgressTracker(progress, len(items)) if progress else None
        result._set_total(len(items))
        if tracker is not None:
            tracker.set_total(len(items))
        # Each chunk goes out as soon as it is pickled, so the workers start while the
        # rest is being pickled; an engine that takes many at once (a cluster's, where
        # each submission is a request) gets them together. A chunk that cannot be pickled
        # raises here, at the call.
        self._engine.submit_many(
            self._map_batches(func, items, kind, chunksize, context, result, tracker, timeout)
        )
        return result

    def _map_batches(
        self,
        func: Callable[..., Any],
        items: list[Any],
        kind: int,
        chunksize: int,
        context: str,
        result: MapResult,
        tracker: ProgressTracker | None,
        timeout: float | None,
    ) -> Iterator[Batch]:
        """The chunks of a map, each pickled when the engine takes it (a chunk that cannot
        be pickled raises then, out of ``submit_many``, at the call)."""
        name = _name_of(func)
        for start in range(0, len(items), chunksize):
            payload = (kind, func, items[start : start + chunksize])
            chunk = payload[2]
            data, buffers = self._encode(payload, context)
            yield Batch(
                data,
                _map_deliverer(result, start, len(chunk), tracker),
                _range_describer(name, start, context),
                len(chunk),
                None if timeout is None else timeout * len(chunk),
                buffers=buffers,
                encode=self._encoder,
                payload=payload,
            )

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
        buffersize: int | None = None,
    ) -> IMapIterator:
        """Results of *func* over *iterable*, in order, as they come.

        *iterable* is consumed lazily, a bounded window ahead of the caller: at most
        *buffersize* chunks (of *chunksize* items) are read before their results are
        taken. By default the window is 32 batches per worker (a batch being one chunk,
        or up to 64 when tasks are quick), so an endless generator works and a huge one
        is never held in memory (a ThreadPool reads on regardless). After ``close()`` the
        rest is read regardless, as ``join()`` waits for it.

        Raises:
            ValueError: the pool is not running, *chunksize* < 1, or *buffersize* is not
                None or an int >= 1.
        """
        return self._imap(
            func, iterable, chunksize, IMapIterator(), task_timeout, progress, buffersize
        )

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
        buffersize: int | None = None,
    ) -> IMapIterator:
        """Like :meth:`imap`, in the order the results complete (same read-ahead window,
        same errors)."""
        return self._imap(
            func, iterable, chunksize, IMapUnorderedIterator(), task_timeout, progress,
            buffersize,
        )

    def _imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int,
        results: IMapIterator,
        task_timeout: float | None,
        progress: Any = False,
        buffersize: int | None = None,
    ) -> IMapIterator:
        self._engine.check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        _check_buffersize(buffersize)
        timeout = self._timeout(task_timeout)
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        tracker = ProgressTracker(progress, total) if progress else None
        source = _ImapSource(func, iter(iterable), chunksize, results, timeout, self._encoder,
                             tracker)
        if buffersize is not None:
            source.window_tasks = buffersize
        else:
            source.batches_ahead = self._processes * READ_AHEAD_BATCHES_PER_WORKER
        self._engine.add_source(source)
        return results

    # -- what it does -------------------------------------------------------------------
    def _limit_prefetch(self, depth: int) -> None:
        """Let each worker hold at most *depth* batches (PoolExecutor keeps one queued
        behind the running task, as concurrent.futures does, so cancel() can reach the
        rest)."""
        self._engine.prefetch_depth = depth

    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool: workers, tasks done, failed and queued, restarts and
        their causes, and each worker's busy and idle time (a polyproc extension)."""
        stats: PoolStatistics = self._engine.statistics()
        return stats

    # -- life cycle --------------------------------------------------------------------
    def close(self) -> None:
        """Accept no more tasks; the workers exit once the queued ones are done."""
        _log.debug("closing pool")
        self._engine.close()

    def terminate(self) -> None:
        """Stop the workers now; tasks not yet completed fail with ProcessError."""
        _log.debug("terminating pool")
        finalizer = getattr(self, "_terminate", None)
        if finalizer is not None and finalizer.still_active():
            finalizer()
        else:
            self._engine.terminate()  # already torn down, or in a forked copy: idempotent

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to exit (after close or terminate).

        Raises:
            ValueError: the pool is still running.
        """
        _log.debug("joining pool")
        self._engine.join(timeout)

    def __enter__(self) -> Pool:
        self._engine.check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()  # as multiprocessing does

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and engine.state is _RUN:
            warnings.warn(
                f"unclosed running multiprocessing pool {self!r}", ResourceWarning, stacklevel=2
            )
            if getattr(self, "_terminate", None) is None:
                engine.terminate()  # no finalizer to do it (__init__ failed after the engine)

    def __reduce__(self) -> Any:
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    def __repr__(self) -> str:
        state = self._engine.state.name
        return f"<{type(self).__name__} state={state} pool_size={self._processes}>"


class _WeakEncoder:
    """``pool._encode`` without a strong reference to the pool."""

    __slots__ = ("_method",)

    def __init__(self, pool: Pool) -> None:
        self._method = weakref.WeakMethod(pool._encode)

    def __call__(self, payload: tuple[Any, ...], context: str) -> tuple[Any, Any]:
        encode = self._method()
        if encode is None:  # a task run again after its pool was dropped: fail that task
            raise ValueError("Pool not running")
        return encode(payload, context)


def _terminate_pool(engine: Engine) -> None:
    """Tear the pool down, logging the stages of multiprocessing's own teardown.

    The pool's finalizer: run once, by ``terminate()``, at garbage collection or at exit.
    It must not refer to the Pool itself (its garbage collection triggers it).
    """
    processes = isinstance(engine, PoolEngine)
    _log.debug("finalizing pool")
    # polyproc has no task and result handler threads, but the stages are the same.
    _log.debug("helping task handler/workers to finish")
    _log.debug("removing tasks from inqueue until task handler finished")
    _log.debug("joining worker handler")
    if processes:
        _log.debug("terminating workers")
    engine.terminate()  # kills the workers, fails what is pending, joins the manager
    _log.debug("joining task handler")
    _log.debug("joining result handler")
    if processes:
        _log.debug("joining pool workers")


def _range_describer(name: str, offset: int, context: str) -> Callable[[int, int], str]:
    def describe(first: int, last: int) -> str:
        first, last = offset + first, offset + last
        items = f"item {first}" if first == last else f"items {first}..{last}"
        return f"{name} on {items} of a {context}"

    return describe


def _map_deliverer(
    result: MapResult, offset: int, length: int, tracker: ProgressTracker | None
) -> Callable[[int, bool, Any], None]:
    def deliver(first: int, success: bool, value: Any) -> None:
        # The bar first, so that it is complete by the time map() returns.
        if success:
            if tracker is not None:
                tracker.done(len(value))
            result._put(offset + first, value)
        else:
            if tracker is not None:
                tracker.done(length - first)
            result._fail(value[1])

    return deliver


class _ImapSource:
    """The lazy input of one imap call: items are read and pickled as workers have room,
    several tasks to a batch when tasks are quick (see _local._dispatch.Dispatcher._max_tasks)."""

    def __init__(
        self,
        func: Callable[[Any], Any],
        items: Iterator[Any],
        chunksize: int,
        results: IMapIterator,
        timeout: float | None,
        encode: Callable[[tuple[Any, ...], str], Any],
        tracker: ProgressTracker | None = None,
    ) -> None:
        self._encode = encode
        self._tracker = tracker
        self._func = func
        self._describe_name = _name_of(func)
        self._items = items
        self._chunksize = chunksize
        self._results = results
        self._timeout = timeout
        self._position = 0
        self._ready: list[Batch] = []  # batches split off a group that failed to pickle
        # The read-ahead window (see Pool.imap): tasks read beyond those whose results
        # were taken, either fixed (buffersize) or this many batches of the size the
        # engine asks for; unbounded once the pool is closing (drain).
        self.window_tasks: int | None = None
        self.batches_ahead = 8
        self._draining = False

    @property
    def resume(self) -> Callable[[], None] | None:
        """The engine's hook to call when a paused input may be read again."""
        return self._results.resume

    @resume.setter
    def resume(self, hook: Callable[[], None] | None) -> None:
        self._results.resume = hook

    def drain(self) -> None:
        """Read the rest of the input regardless of the reader (the pool is closing)."""
        self._draining = True
        self._results._resume_input()

    def _room(self, max_tasks: int) -> int:
        """How many tasks may be read now (0: pause until the reader catches up)."""
        results = self._results
        if self._draining or results.resume is None:
            return max_tasks  # an engine that cannot resume a paused input reads on
        cs = self._chunksize
        window = self.window_tasks
        if window is None:
            window = self.batches_ahead * max_tasks
        window = min(window, max(1, IMapIterator.UNREAD_HIGH // cs))
        ahead = -(-(self._position - results._consumed()) // cs)  # in tasks
        if ahead < window:
            return min(max_tasks, window - ahead)
        # Go on once the reader has taken half the window, so that the input is read in
        # batches, not one task per result taken.
        if results._pause(self._position - int(window * RESUME_FRACTION) * cs):
            return 0
        ahead = -(-(self._position - results._consumed()) // cs)
        return min(max_tasks, max(1, window - ahead))

    def next_batch(self, max_tasks: int = 1) -> Any:
        if self._ready:
            return self._ready.pop(0)
        max_tasks = self._room(max_tasks)
        if not max_tasks:
            return WAIT  # the caller reads results slower than they come: wait for it
        if self._timeout is not None:
            max_tasks = 1  # a deadline applies to one task at a time
        cs = self._chunksize
        while True:
            group = list(itertools.islice(self._items, cs * max_tasks))
            if not group:
                self._results._set_total(self._position)
                if self._tracker is not None:
                    self._tracker.set_total(self._position)
                return None
            offset = self._position
            self._position += len(group)
            batch = self._make_batch(group, offset)
            if isinstance(batch, Batch):
                return batch
            if batch:
                continue  # a single task that did not pickle: reported as failed
            # The group did not pickle: pickle it task by task to fail only the culprits.
            for start in range(0, len(group), cs):
                single = self._make_batch(group[start : start + cs], offset + start, True)
                if isinstance(single, Batch):
                    self._ready.append(single)
            if self._ready:
                return self._ready.pop(0)

    def _make_batch(
        self, group: list[Any], offset: int, report: bool = False
    ) -> Batch | bool:
        """A batch of *group*; if it does not pickle, False for a group of several tasks
        (to be split), else True once the failure is reported."""
        payload = (MAP, self._func, group)
        try:
            data, buffers = self._encode(payload, "Pool.imap")
        except Exception as exc:
            if not report and len(group) > self._chunksize:
                return False
            self._results._put(offset, [], exc, len(group))
            if self._tracker is not None:
                self._tracker.done(len(group))
            return True
        return Batch(
            data,
            self._deliverer(offset, len(group)),
            _range_describer(self._describe_name, offset, "Pool.imap"),
            len(group),
            None if self._timeout is None else self._timeout * len(group),
            chunksize=self._chunksize,
            buffers=buffers,
            encode=self._encode,
            payload=payload,
        )

    def _deliverer(self, offset: int, length: int) -> Callable[[int, bool, Any], None]:
        results = self._results
        tracker = self._tracker
        chunksize = self._chunksize

        def deliver(first: int, success: bool, value: Any) -> None:
            if success:
                if tracker is not None:
                    tracker.done(len(value))
                results._put(offset + first, value, None, len(value))
            else:
                done, exc = value
                items = min(first + chunksize, length) - first
                if isinstance(exc, WorkerLostError | TimeoutError):
                    # Which input it was, for imap_unordered callers (the pool's own errors).
                    exc.task_item = offset + first  # type: ignore[union-attr]
                if tracker is not None:
                    tracker.done(items)
                results._put(offset + first, done, exc, items)

        return deliver

    def fail(self, error: BaseException) -> None:
        self._results._put(self._position, [], error, 1)
        self._position += 1
        self._results._set_total(self._position)
        if self._tracker is not None:
            self._tracker.done(1)
            self._tracker.set_total(self._position)
