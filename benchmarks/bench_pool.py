"""Process pool benchmarks: ``Pool`` and its peers, 2 workers, ``fork`` start method.

Every pool is driven through one small adapter table (`_Adapter`: create, map,
imap_unordered, submit, get, close), so each benchmark is written once. The libraries of the
runner (multiprocessing, polyproc, multiprocess, billiard) are measured through their
``get_context("fork").Pool(2)`` by the ``measure_*`` functions; the peers run as baseline rows
by the ``baseline_*`` functions, each skipped (`Unavailable`) when not installed:

* ``concurrent.futures`` -- the standard ``ProcessPoolExecutor``, fork context;
* ``polyproc PoolExecutor`` -- ``polyproc.pool.PoolExecutor``, fork context;
* ``loky`` -- ``loky.ProcessPoolExecutor``; loky cannot use ``fork`` and starts its workers
  with its own spawn-like ``loky`` method, which only ``pool-lifecycle`` times;
* ``pebble`` -- ``pebble.ProcessPool`` with the standard fork context;
* ``mpire`` -- ``mpire.WorkerPool(start_method="fork", keep_alive=True)`` (without
  ``keep_alive`` it would start new workers for every map).

Executors have no ``imap_unordered``: there it is ``submit`` of every item, then
``as_completed``. ``map`` uses each library's default chunking unless the caller passes a
chunk size (`benchmarks.bench_pool_workloads` does): 1 item per task for the executors and
pebble, a computed chunk size for the Pool API and mpire. mpire's ``map`` runs with
``concatenate_numpy_output=False``, so that numpy results come back as a list, as elsewhere.

Benchmarks 1-4 leave start-up out: the pool is created and warmed with one task per worker,
submitted together through the operation about to be timed, then timed. ``pool-lifecycle``
times exactly that start-up: create, first task, close and join. Every result is checked
(count and sum).

The pool is not pinned to CPUs: how its workers are scheduled is part of what it costs. The
``raw os.pipe`` row of ``pool-one-at-a-time`` reuses `benchmarks.bench_process`: a bare
``os.fork`` child echoing a pickled small tuple, pinned to two CPUs -- the floor under any
round trip to another process.

The function run by the workers is `_inc`, at module level; this module imports only
``time`` at the top, like the other topic modules.
"""

from __future__ import annotations

import time

from benchmarks._api import Unavailable, get_context, require

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import ModuleType
    from typing import Any, NamedTuple, Protocol

    from benchmarks._runner import Benchmark

#: Worker processes in every pool.
WORKERS = 2
#: Start method of every pool (loky excepted: it refuses ``fork``).
START_METHOD = "fork"


def _inc(x: int) -> int:
    """The trivial task: one addition."""
    return x + 1


# --- the adapter table -----------------------------------------------------------------------

if TYPE_CHECKING:

    class _Map(Protocol):
        def __call__(
            self, pool: Any, fn: Callable[[Any], Any], items: list[Any],
            chunksize: int | None = None,
        ) -> Iterable[Any]: ...

    class _Adapter(NamedTuple):
        create: Callable[[], Any]
        map: _Map  # chunksize None: the library's default chunking
        imap_unordered: Callable[[Any, Callable[[int], int], list[int]], Iterable[int]]
        submit: Callable[[Any, Callable[[int], int], int], Any]
        get: Callable[[Any], int]
        close: Callable[[Any], None]


def _make_adapter(**calls: Any) -> _Adapter:
    """An `_Adapter` (a plain namedtuple at run time, so nothing heavy is imported)."""
    from collections import namedtuple

    fields = ("create", "map", "imap_unordered", "submit", "get", "close")
    return namedtuple("_Adapter", fields)(**calls)  # type: ignore[return-value]


def _close_join(pool: Any) -> None:
    pool.close()
    pool.join()


def _pool_adapter(mod: ModuleType) -> _Adapter:
    """The stdlib ``Pool`` API of *mod* (multiprocessing, polyproc, multiprocess, billiard)."""
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Pool")
    return _make_adapter(
        create=lambda: ctx.Pool(WORKERS),
        map=lambda pool, fn, items, chunksize=None: pool.map(fn, items, chunksize),
        imap_unordered=lambda pool, fn, items: pool.imap_unordered(fn, items, chunksize=1),
        submit=lambda pool, fn, x: pool.apply_async(fn, (x,)),
        get=lambda handle: handle.get(),
        close=_close_join,
    )


def _executor_adapter(make: Callable[[], Any]) -> _Adapter:
    """A ``concurrent.futures.Executor`` built by *make*."""
    from concurrent.futures import as_completed

    def imap_unordered(ex: Any, fn: Callable[[int], int], items: list[int]) -> Iterable[int]:
        return (f.result() for f in as_completed([ex.submit(fn, x) for x in items]))

    return _make_adapter(
        create=make,
        map=lambda ex, fn, items, chunksize=None: ex.map(fn, items, chunksize=chunksize or 1),
        imap_unordered=imap_unordered,
        submit=lambda ex, fn, x: ex.submit(fn, x),
        get=lambda future: future.result(),
        close=lambda ex: ex.shutdown(wait=True),
    )


def _import(name: str) -> ModuleType:
    """``import name``, or `Unavailable` if it is not installed."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise Unavailable(f"{name} is not installed ({exc})") from exc


def _concurrent_futures() -> _Adapter:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context(START_METHOD)
    return _executor_adapter(lambda: ProcessPoolExecutor(WORKERS, mp_context=ctx))


def _polyproc_executor() -> _Adapter:
    polyproc = _import("polyproc")
    pool = _import("polyproc.pool")
    require(pool, "PoolExecutor")
    ctx = get_context(polyproc, START_METHOD)
    return _executor_adapter(lambda: pool.PoolExecutor(WORKERS, mp_context=ctx))


def _loky() -> _Adapter:
    loky = _import("loky")
    return _executor_adapter(lambda: loky.ProcessPoolExecutor(max_workers=WORKERS))


def _pebble() -> _Adapter:
    import multiprocessing
    from concurrent.futures import as_completed

    pebble = _import("pebble")
    ctx = multiprocessing.get_context(START_METHOD)

    def submit(pool: Any, fn: Callable[[int], int], x: int) -> Any:
        return pool.schedule(fn, args=(x,))

    def imap_unordered(pool: Any, fn: Callable[[int], int], items: list[int]) -> Iterable[int]:
        return (f.result() for f in as_completed([submit(pool, fn, x) for x in items]))

    return _make_adapter(
        create=lambda: pebble.ProcessPool(max_workers=WORKERS, context=ctx),
        map=lambda pool, fn, items, chunksize=None: pool.map(
            fn, items, chunksize=chunksize or 1
        ).result(),
        imap_unordered=imap_unordered,
        submit=submit,
        get=lambda future: future.result(),
        close=_close_join,
    )


def _mpire() -> _Adapter:
    mpire = _import("mpire")
    return _make_adapter(
        create=lambda: mpire.WorkerPool(n_jobs=WORKERS, start_method=START_METHOD,
                                        keep_alive=True),
        map=lambda pool, fn, items, chunksize=None: pool.map(
            fn, items, chunk_size=chunksize, concatenate_numpy_output=False
        ),
        imap_unordered=lambda pool, fn, items: pool.imap_unordered(fn, items, chunk_size=1),
        submit=lambda pool, fn, x: pool.apply_async(fn, args=(x,)),
        get=lambda handle: handle.get(),
        close=lambda pool: pool.stop_and_join(),
    )


#: Peer label -> adapter factory; each becomes a baseline row.
PEERS: dict[str, Callable[[], _Adapter]] = {
    "concurrent.futures": _concurrent_futures,
    "polyproc PoolExecutor": _polyproc_executor,
    "loky": _loky,
    "pebble": _pebble,
    "mpire": _mpire,
}


# --- measurements ----------------------------------------------------------------------------


def _check(total: int, count: int, n: int, what: str) -> None:
    """Raise unless *count* results summing to *total* are `_inc` over ``range(n)``."""
    if count != n or total != n * (n + 1) // 2:
        raise RuntimeError(f"{what} returned {count} results summing to {total}")


def _warm(adapter: _Adapter, pool: Any, kind: str) -> None:
    """One task per worker, through the operation about to be timed: start-up is over.

    The same operation, not just any: mpire 2.10 with ``keep_alive=True`` fails a ``map``
    (``TypeError`` in the worker) after an ``apply_async`` of the same function.
    """
    data = list(range(WORKERS))
    if kind == "map":
        results = list(adapter.map(pool, _inc, data))
    elif kind == "imap":
        results = list(adapter.imap_unordered(pool, _inc, data))
    else:
        results = [adapter.get(h) for h in [adapter.submit(pool, _inc, x) for x in data]]
    _check(sum(results), len(results), WORKERS, "warm-up")


def _throughput(adapter: _Adapter, kind: str, items: int, rounds: int) -> list[float]:
    """Items (or tasks) per second of *rounds* timed rounds of *kind* over *items* ints."""
    data = list(range(items))
    pool = adapter.create()
    samples: list[float] = []
    try:
        _warm(adapter, pool, kind)
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            if kind == "map":
                results = list(adapter.map(pool, _inc, data))
            elif kind == "imap":
                results = list(adapter.imap_unordered(pool, _inc, data))
            else:  # apply
                handles = [adapter.submit(pool, _inc, x) for x in data]
                results = [adapter.get(h) for h in handles]
            t1 = time.perf_counter_ns()
            _check(sum(results), len(results), items, kind)
            samples.append(items / ((t1 - t0) / 1e9))
    finally:
        adapter.close(pool)
    return samples


def _one_at_a_time(adapter: _Adapter, warmup: int, tasks: int) -> list[float]:
    """Microseconds per submit + wait of a single task, *tasks* times after *warmup*."""
    pool = adapter.create()
    timings: list[float] = []
    try:
        _warm(adapter, pool, "one")
        for i in range(warmup + tasks):
            t0 = time.perf_counter_ns()
            value = adapter.get(adapter.submit(pool, _inc, i))
            t1 = time.perf_counter_ns()
            if value != i + 1:
                raise RuntimeError(f"task returned {value!r} for {i}")
            if i >= warmup:
                timings.append((t1 - t0) / 1e3)
    finally:
        adapter.close(pool)
    return timings


def _lifecycle(adapter: _Adapter, warmup: int, samples: int) -> list[float]:
    """Milliseconds for create + first task + close/join; the first *warmup* not kept."""
    timings: list[float] = []
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        pool = adapter.create()
        value = adapter.get(adapter.submit(pool, _inc, 1))
        adapter.close(pool)
        t1 = time.perf_counter_ns()
        if value != 2:
            raise RuntimeError(f"first task returned {value!r}")
        if i >= warmup:
            timings.append((t1 - t0) / 1e6)
    return timings


def _run(adapter: _Adapter, *, kind: str, **params: Any) -> list[float]:
    """Dispatch benchmark *kind* with its *params* to *adapter*."""
    if kind in ("map", "imap", "apply"):
        return _throughput(adapter, kind, **params)
    if kind == "one":
        return _one_at_a_time(adapter, **params)
    if kind == "lifecycle":
        return _lifecycle(adapter, **params)
    raise ValueError(f"unknown benchmark kind {kind!r}")


def measure_pool(mod: ModuleType, **params: Any) -> list[float]:
    """A library of the runner, through ``mod.get_context("fork").Pool(2)``."""
    return _run(_pool_adapter(mod), **params)


def baseline_concurrent_futures(**params: Any) -> list[float]:
    """``concurrent.futures.ProcessPoolExecutor``, fork context."""
    return _run(PEERS["concurrent.futures"](), **params)


def baseline_polyproc_executor(**params: Any) -> list[float]:
    """``polyproc.pool.PoolExecutor``, fork context."""
    return _run(PEERS["polyproc PoolExecutor"](), **params)


def baseline_loky(**params: Any) -> list[float]:
    """``loky.ProcessPoolExecutor`` (its own ``loky`` start method)."""
    return _run(PEERS["loky"](), **params)


def baseline_pebble(**params: Any) -> list[float]:
    """``pebble.ProcessPool``, fork context."""
    return _run(PEERS["pebble"](), **params)


def baseline_mpire(**params: Any) -> list[float]:
    """``mpire.WorkerPool``, fork, ``keep_alive=True``."""
    return _run(PEERS["mpire"](), **params)


def baseline_raw_pipe(*, kind: str, warmup: int, tasks: int) -> list[float]:
    """The raw ``os.pipe`` ping-pong of `benchmarks.bench_process`, pinned to two CPUs."""
    from benchmarks.bench_process import baseline_os_pipe

    if kind != "one":
        raise ValueError("the raw pipe baseline only fits pool-one-at-a-time")
    return baseline_os_pipe(placement="two-cpus", warmup=warmup, samples=tasks)


# --- registration ----------------------------------------------------------------------------


def _versions() -> str:
    """The installed versions of the peers, for the titles, read without importing them."""
    import importlib.metadata

    found = []
    for name in ("loky", "pebble", "mpire"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def register() -> list[Benchmark]:
    """The benchmarks of this module, in the order they run."""
    from benchmarks._runner import Benchmark

    peers = {
        "concurrent.futures": baseline_concurrent_futures,
        "polyproc PoolExecutor": baseline_polyproc_executor,
        "loky": baseline_loky,
        "pebble": baseline_pebble,
        "mpire": baseline_mpire,
    }
    setup = (f"{WORKERS} workers, {START_METHOD} (loky: its own start method); "
             f"peers: {_versions()}")
    warm = "start-up excluded (pool created and warmed first)"
    return [
        Benchmark(
            name="pool-map-tiny",
            title=f"map(inc, 200,000 ints), default chunking (executors and pebble: 1 per "
            f"task); {warm}; {setup}",
            unit="items/s",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "map", "items": 200_000, "rounds": 1},
            quick_params={"kind": "map", "items": 2_000, "rounds": 1},
            baselines=peers,
        ),
        Benchmark(
            name="pool-imap-chunk1",
            title=f"imap_unordered(inc, 20,000 ints, chunksize=1) (executors and pebble: "
            f"submit all + as_completed); {warm}; {setup}",
            unit="items/s",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "imap", "items": 20_000, "rounds": 3},
            quick_params={"kind": "imap", "items": 1_000, "rounds": 1},
            baselines=peers,
        ),
        Benchmark(
            name="pool-apply-async-5000",
            title=f"5,000 apply_async(inc) then get() each (executors: submit + result); "
            f"{warm}; {setup}",
            unit="tasks/s",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "apply", "items": 5_000, "rounds": 5},
            quick_params={"kind": "apply", "items": 500, "rounds": 1},
            baselines=peers,
        ),
        Benchmark(
            name="pool-one-at-a-time",
            title=f"one task at a time: apply_async(inc).get() (executors: submit().result()) "
            f"2,000 times; {warm}, pools not pinned; raw os.pipe row: bare fork child echoing "
            f"a pickled tuple, pinned to two CPUs; {setup}",
            unit="µs per round trip",
            higher_is_better=False,
            measure=measure_pool,
            params={"kind": "one", "warmup": 100, "tasks": 2_000},
            quick_params={"kind": "one", "warmup": 10, "tasks": 100},
            baselines={**peers, "raw os.pipe": baseline_raw_pipe},
        ),
        Benchmark(
            name="pool-lifecycle",
            title=f"create Pool + first apply_async(inc).get() + close() + join() (executors: "
            f"submit().result() + shutdown(wait=True)); the first of each run is not kept "
            f"(except with --quick); {setup}",
            unit="ms per lifecycle",
            higher_is_better=False,
            measure=measure_pool,
            params={"kind": "lifecycle", "warmup": 1, "samples": 8},
            quick_params={"kind": "lifecycle", "warmup": 0, "samples": 1},
            baselines=peers,
        ),
    ]
