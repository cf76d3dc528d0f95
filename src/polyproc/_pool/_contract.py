"""The contract between ``Pool`` and its engines: what an engine does, and what it is given.

``Pool`` (and ``PoolExecutor`` through it) drives one of three engines: worker processes
(:class:`~._local.PoolEngine`), threads (:class:`~._threads.ThreadEngine`) or a Dask
cluster (``_backends._dask.DaskEngine``). They share nothing but what is here:

* :class:`Engine`, the interface the Pool calls, and nothing else;
* :class:`RunState`, the life cycle every engine goes through (RUN, then CLOSE or
  TERMINATE);
* :class:`Batch`, one unit of submitted work, and :class:`Source` (with :data:`WAIT`), a
  lazy stream of batches (``imap``);
* :class:`RetryPolicy`, the one rule deciding whether a failed task runs again
  (``retries=``/``retry_on=``);
* the registry of cluster engines (:func:`register_cluster_engine`): a backend lives in a
  layer above the pool (``_backends``), so the pool cannot import it; the facade imports
  the backends, which register a factory under a name.

``Engine`` is a runtime-checkable Protocol, but this module does not import ``typing`` on
import (it slows every process that imports the pool, spawned children included): the
class is built the first time ``Engine`` is looked up (see ``__getattr__`` below).
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any, Protocol, runtime_checkable

    from ._stats import PoolStatistics

    Deliver = Callable[[int, bool, Any], None]
    """Receives a task's outcome: ``deliver(first_item, ok, payload)`` (see Batch)."""

    class Source(Protocol):
        """A lazy stream of batches (imap): pulled only when a worker has room."""

        resume: Callable[[], None] | None

        def next_batch(self, max_tasks: int = 1) -> Batch | Any | None:
            """The next batch of at most *max_tasks* tasks, None when exhausted, or WAIT:
            not now (too many results unread), ``resume()`` will be called."""

        def fail(self, error: BaseException) -> None:
            """Fail everything not yet delivered (the input raised, or the pool ended)."""

        def drain(self) -> None:
            """Read the rest of the input whatever the reader does (the pool is closing)."""
else:
    # Only the type checker sees the real ones (see the module's docstring).
    Protocol = object

    def runtime_checkable(cls: type) -> type:
        return cls

__all__ = [
    "WAIT",
    "Batch",
    "Engine",
    "RetryPolicy",
    "RunState",
    "RunStateKeeper",
    "cluster_engine",
    "register_cluster_engine",
]


class RunState(enum.Enum):
    """Where an engine is in its life: it accepts work only in RUN."""

    RUN = "RUN"
    CLOSE = "CLOSE"  # no more work accepted; what is queued still runs
    TERMINATE = "TERMINATE"  # stopped: what has not completed fails


class _Wait:
    def __repr__(self) -> str:
        return "WAIT"


#: What a source returns when its caller has too many results unread: the engine pulls
#: from it again after the source calls its ``resume`` hook.
WAIT: Any = _Wait()


class Batch:
    """One message to a worker: items ``start..stop`` of a pickled call, in tasks of
    *chunksize* items.

    *deliver(first_item, ok, payload)* receives each task's outcome: on success the
    results of items ``first_item...`` (consecutive tasks may come together); on failure
    ``(results_before_the_failure, exception)`` for the task starting at *first_item*.
    *describe(first, last)* names items ``first..last`` for error messages (computed only
    when needed).
    """

    __slots__ = (
        "attempts",
        "buffers",
        "chunksize",
        "data",
        "deadline",
        "deliver",
        "describe",
        "encode",
        "id",
        "on_start",
        "payload",
        "reported",
        "start",
        "stop",
        "timeout",
    )

    def __init__(
        self,
        data: Any,
        deliver: Deliver,
        describe: Callable[[int, int], str],
        stop: int,
        timeout: float | None = None,
        *,
        chunksize: int | None = None,
        buffers: Sequence[memoryview] = (),
        start: int = 0,
        encode: Callable[[Any, str], tuple[Any, Sequence[memoryview]]] | None = None,
        payload: Any = None,
    ) -> None:
        self.id = 0
        # encode(payload, context) pickles the call afresh, for running it again: what a
        # worker unpickled once (a shared lock's descriptor, say) cannot always be
        # unpickled twice.
        self.encode = encode
        self.payload = payload
        # The pickled (kind, func, items) for worker processes; the tuple itself for threads.
        self.data = data
        self.buffers = buffers
        self.deliver = deliver
        self.describe = describe
        self.start = start
        self.stop = stop
        self.chunksize = chunksize or max(1, stop - start)
        # Seconds the whole batch may run (batches with a timeout hold a single task).
        self.timeout = timeout
        self.deadline: float | None = None
        self.reported = 0  # tasks whose outcome has arrived
        # Runs so far of each task that has failed, by its first item (retries).
        self.attempts: dict[int, int] = {}
        # Called just before the batch goes to a worker; False drops it (a cancelled future).
        self.on_start: Callable[[], bool] | None = None

    @property
    def tasks(self) -> int:
        """How many tasks the batch holds."""
        return -(-(self.stop - self.start) // self.chunksize)

    def view(self, start: int, stop: int) -> Batch:
        """The same call restricted to items ``start..stop`` (to run again)."""
        data, buffers = self.data, self.buffers
        if self.encode is not None:
            data, buffers = self.encode(self.payload, "running a task again")
        again = Batch(data, self.deliver, self.describe, stop, self.timeout,
                      chunksize=self.chunksize, buffers=buffers, start=start,
                      encode=self.encode, payload=self.payload)
        again.attempts = self.attempts
        return again

    def fail_unreported(self, error: BaseException) -> None:
        """Fail every task of this batch whose outcome has not arrived."""
        first = self.start + self.reported * self.chunksize
        for task_first in range(first, self.stop, self.chunksize):
            self.deliver(task_first, False, ([], error))

    def describe_task(self, first: int) -> str:
        """Names the task starting at item *first*."""
        return self.describe(first, min(first + self.chunksize, self.stop) - 1)


class RunStateKeeper:
    """The part of the contract every engine implements the same way: its run state, and
    the check ``Pool`` makes before accepting work. Engines inherit it and set ``_state``.
    """

    _state: RunState

    @property
    def state(self) -> RunState:
        """Where the pool is in its life."""
        return self._state

    def check_running(self) -> None:
        """Raise ValueError unless the pool accepts work (as multiprocessing does)."""
        if self._state is not RunState.RUN:
            raise ValueError("Pool not running")


class RetryPolicy:
    """A pool's ``retries`` and ``retry_on``: which failed tasks run again, and how often.

    Every engine asks :meth:`retry` and nothing else, so the rule cannot differ between
    them.
    """

    __slots__ = ("retries", "retry_on")

    def __init__(self, retries: int = 0, retry_on: tuple[type[BaseException], ...] = ()) -> None:
        self.retries = retries
        self.retry_on = retry_on

    def retry(self, batch: Batch, first: int, error: BaseException) -> Batch | None:
        """Decide for the task of *batch* starting at item *first*, which failed with
        *error*: the task to run again (its run is counted in ``batch.attempts``), or
        None: it fails, and if it ran more than once *error* gets a note saying how often.
        """
        attempts = batch.attempts.get(first, 0)
        if attempts < self.retries and isinstance(error, self.retry_on):
            batch.attempts[first] = attempts + 1
            return batch.view(first, min(first + batch.chunksize, batch.stop))
        if attempts:
            error.add_note(f"the pool ran this task {attempts + 1} times (retries={self.retries})")
        return None

    def __repr__(self) -> str:
        return f"RetryPolicy(retries={self.retries}, retry_on={self.retry_on!r})"


@runtime_checkable
class Engine(Protocol):
    """What runs a Pool's batches: the whole of what ``Pool`` and ``PoolExecutor`` use.

    Every method may be called from any thread. Outcomes reach the batches' ``deliver``
    callables, never while the engine holds a lock (a callback may submit more work).
    """

    #: Most batches a worker may hold at once (an executor sets 2, so that its futures
    #: stay cancellable until shortly before they run); engines that hand out batches
    #: one at a time ignore it.
    prefetch_depth: int

    @property
    def size(self) -> int:
        """The number of workers the pool counts on (processes, threads, cluster threads)."""

    @property
    def state(self) -> RunState:
        """Where the engine is in its life."""

    def check_running(self) -> None:
        """Raise ValueError unless the engine accepts work (as multiprocessing does)."""

    def submit(self, batch: Batch) -> None:
        """Run *batch*.

        Raises:
            ValueError: the engine is not running.
        """

    def submit_many(self, batches: Iterable[Batch]) -> None:
        """Run *batches* (a map's chunks). The local engines send each as it is produced,
        so workers start while the rest is pickled; a cluster's takes them all first, to
        send them in one request. An exception from the iterable propagates."""

    def add_source(self, source: Source) -> None:
        """Pull batches from *source* as workers have room (imap)."""

    def close(self) -> None:
        """Accept no more work; what is queued still runs."""

    def terminate(self) -> None:
        """Stop now: what has not completed fails with ProcessError (idempotent)."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the work and the workers to finish (after close or terminate).

        Raises:
            ValueError: the engine is still running.
        """

    def statistics(self) -> PoolStatistics:
        """A snapshot of the engine's counters."""


if not TYPE_CHECKING:
    # Kept as a plain class until first looked up: see __getattr__.
    _EngineSpec = Engine
    del Engine

    def __getattr__(name: str) -> object:
        """Build the runtime-checkable ``Engine`` Protocol on first use (imports typing)."""
        if name != "Engine":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import typing

        namespace = {key: value for key, value in vars(_EngineSpec).items()
                     if key not in ("__dict__", "__weakref__")}
        engine = typing.runtime_checkable(type("Engine", (typing.Protocol,), namespace))
        globals()["Engine"] = engine
        return engine


# -- the registry of cluster engines ---------------------------------------------------
_factories: dict[str, Callable[..., Engine]] = {}


def register_cluster_engine(name: str, factory: Callable[..., Engine]) -> None:
    """Make *factory(cluster, processes, initializer, initargs, options, retries,
    retry_on)* the engine of pools given a cluster of kind *name*."""
    _factories[name] = factory


def cluster_engine(name: str) -> Callable[..., Engine]:
    """The factory registered under *name*.

    Raises:
        ValueError: no such backend.
    """
    try:
        return _factories[name]
    except KeyError:
        raise ValueError(
            f"no cluster backend {name!r} (known: {', '.join(sorted(_factories)) or 'none'})"
        ) from None
