"""``Pool``: multiprocessing's pool API over :class:`~._engine.PoolEngine`.

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

from .._process._state import runtime
from .._wire import _pickling
from ._engine import RUN, Batch, PoolEngine
from ._progress import ProgressTracker
from ._results import ApplyResult, IMapIterator, IMapUnorderedIterator, MapResult
from ._stats import PoolStatistics
from ._worker import APPLY, MAP, STARMAP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any

__all__ = ["Pool"]

_MAX_DESCRIBED_ARGS = 60


def _name_of(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def _describe_call(func: Any, args: tuple[Any, ...]) -> str:
    text = repr(args)
    if len(text) > _MAX_DESCRIBED_ARGS:
        text = text[: _MAX_DESCRIBED_ARGS - 3] + "..."
    return f"task {_name_of(func)}{text}"


def _check_timeout(task_timeout: float | None) -> float | None:
    if task_timeout is not None and not task_timeout > 0:
        raise ValueError(f"task_timeout must be a positive number of seconds, not {task_timeout!r}")
    return task_timeout


class Pool:
    """A pool of worker processes, as ``multiprocessing.Pool``.

    *processes* defaults to ``os.cpu_count()``; *initializer(\\*initargs)* runs in each
    worker at start; a worker is replaced after *maxtasksperchild* tasks; *context* picks
    the start method (default: the default context). *task_timeout* (a polyproc
    extension) is the default per-call time limit of every task, in seconds.

    Raises:
        ValueError: *processes* < 1, or a non-positive *task_timeout*.
        TypeError: *initializer* is not callable.
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
    ) -> None:
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if context is None:
            context = runtime.default_context()
        self._task_timeout = _check_timeout(task_timeout)
        self._engine = self._make_engine(
            context, processes, initializer, tuple(initargs), maxtasksperchild
        )
        self._processes = processes

    def _make_engine(self, *args: Any) -> Any:
        return PoolEngine(*args)

    def _encode(self, payload: tuple[Any, ...], context: str) -> Any:
        """What travels to a worker: the pickled payload (raises here if it cannot be)."""
        return _pickling.dumps(payload, context=context)

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
        self._engine.check_running()
        args = tuple(args)
        kwds = dict(kwds or {})
        timeout = self._timeout(task_timeout)
        data = self._encode((APPLY, func, (args, kwds)), "Pool.apply_async")
        result = ApplyResult(callback, error_callback)

        def deliver(success: bool, value: Any) -> None:
            result._set(True, value[0]) if success else result._set(False, value[1])

        batch = Batch(data, deliver, _describe_call(func, args), 1, timeout)
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
        items = list(iterable)
        if kind == STARMAP:
            items = [tuple(args) for args in items]
        timeout = self._timeout(task_timeout)
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize += 1 if extra else 0
        chunksize = max(1, chunksize)
        context = "Pool.starmap" if kind == STARMAP else "Pool.map"
        result = MapResult(callback, error_callback)
        batches = []
        for index, start in enumerate(range(0, len(items), chunksize)):
            chunk = items[start : start + chunksize]
            data = self._encode((kind, func, chunk), context)
            batches.append(
                Batch(
                    data,
                    _map_deliverer(result, index),
                    f"{_name_of(func)} on items {start}..{start + len(chunk) - 1} of a {context}",
                    len(chunk),
                    None if timeout is None else timeout * len(chunk),
                )
            )
        result._set_total(len(batches))
        if progress:
            tracker = ProgressTracker(progress, len(items))
            for batch in batches:
                batch.deliver = _tracked(batch.deliver, tracker, batch.size)
            tracker.set_total_chunks(len(batches))
        for batch in batches:
            self._engine.submit(batch)
        return result

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> IMapIterator:
        """Results of *func* over *iterable*, in order, as they come.

        *iterable* is consumed lazily: only as many chunks as the workers can take are
        read ahead, so a huge generator is never held in memory.
        """
        return self._imap(func, iterable, chunksize, IMapIterator(), task_timeout, progress)

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int = 1,
        *,
        task_timeout: float | None = None,
        progress: Any = False,
    ) -> IMapIterator:
        """Like :meth:`imap`, in the order the results complete."""
        return self._imap(
            func, iterable, chunksize, IMapUnorderedIterator(), task_timeout, progress
        )

    def _imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int,
        results: IMapIterator,
        task_timeout: float | None,
        progress: Any = False,
    ) -> IMapIterator:
        self._engine.check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        timeout = self._timeout(task_timeout)
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        tracker = ProgressTracker(progress, total) if progress else None
        self._engine.add_source(
            _ImapSource(func, iter(iterable), chunksize, results, timeout, self._encode, tracker)
        )
        return results

    # -- what it does -------------------------------------------------------------------
    def statistics(self) -> PoolStatistics:
        """A snapshot of the pool: workers, tasks done, failed and queued, restarts and
        their causes, and each worker's busy and idle time (a polyproc extension)."""
        stats: PoolStatistics = self._engine.statistics()
        return stats

    # -- life cycle --------------------------------------------------------------------
    def close(self) -> None:
        """Accept no more tasks; the workers exit once the queued ones are done."""
        self._engine.close()

    def terminate(self) -> None:
        """Stop the workers now; tasks not yet completed fail with ProcessError."""
        self._engine.terminate()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to exit (after close or terminate).

        Raises:
            ValueError: the pool is still running.
        """
        self._engine.join(timeout)

    def __enter__(self) -> Pool:
        self._engine.check_running()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()  # as multiprocessing does

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and engine._state == RUN:
            warnings.warn(
                f"unclosed running multiprocessing pool {self!r}", ResourceWarning, stacklevel=2
            )
            engine.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError(
            "pool objects cannot be passed between processes or pickled"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} state={self._engine._state} pool_size={self._processes}>"


def _tracked(
    deliver: Callable[[bool, Any], None], tracker: ProgressTracker, size: int
) -> Callable[[bool, Any], None]:
    def deliver_and_count(success: bool, value: Any) -> None:
        deliver(success, value)
        tracker.chunk_done(size)

    return deliver_and_count


def _map_deliverer(result: MapResult, index: int) -> Callable[[bool, Any], None]:
    def deliver(success: bool, value: Any) -> None:
        if success:
            result._set_chunk(index, value)
        else:
            result._fail(value[1])

    return deliver


class _ImapSource:
    """The lazy input of one imap call: chunks are read and pickled on demand."""

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
        self._items = items
        self._chunksize = chunksize
        self._results = results
        self._timeout = timeout
        self._index = 0
        self._position = 0

    def next_batch(self) -> Batch | None:
        while True:
            chunk = list(itertools.islice(self._items, self._chunksize))
            if not chunk:
                self._results._set_total(self._index)
                if self._tracker is not None:
                    self._tracker.set_total_chunks(self._index)
                return None
            index, start = self._index, self._position
            self._index += 1
            self._position += len(chunk)
            try:
                data = self._encode((MAP, self._func, chunk), "Pool.imap")
            except Exception as exc:
                self._results._put_chunk(index, [(False, exc)])
                if self._tracker is not None:
                    self._tracker.chunk_done(len(chunk))
                continue
            deliver = self._deliverer(index)
            if self._tracker is not None:
                deliver = _tracked(deliver, self._tracker, len(chunk))
            return Batch(
                data,
                deliver,
                f"{_name_of(self._func)} on item {start}"
                + (f"..{start + len(chunk) - 1}" if len(chunk) > 1 else "")
                + " of an imap",
                len(chunk),
                None if self._timeout is None else self._timeout * len(chunk),
            )

    def _deliverer(self, index: int) -> Callable[[bool, Any], None]:
        results = self._results

        def deliver(success: bool, value: Any) -> None:
            if success:
                results._put_chunk(index, [(True, v) for v in value])
            else:
                done, exc = value
                results._put_chunk(index, [*((True, v) for v in done), (False, exc)])

        return deliver

    def fail(self, error: BaseException) -> None:
        self._results._put_chunk(self._index, [(False, error)])
        self._index += 1
        self._results._set_total(self._index)
        if self._tracker is not None:
            self._tracker.chunk_done(0)
            self._tracker.set_total_chunks(self._index)
