"""Pool workloads beyond tiny tasks: CPU-bound tasks, big arrays, progress bars, streaming.

The pools are those of `benchmarks.bench_pool` (2 workers, ``fork``), driven through its
adapter table, so the peers of that module (``concurrent.futures``, ``polyproc
PoolExecutor``, loky, pebble, mpire) come along as baseline rows wherever the workload makes
sense for them. Start-up is never timed: each pool is created and warmed through the
operation about to be timed first. Every result is checked.

* ``pool-20ms-tasks``: 100 pure-Python CPU-bound tasks of about 20 ms each (`_spin`, an
  integer arithmetic loop: CPU work, not a sleep and not a busy wait on the clock, so two
  workers sharing one CPU take twice as long), through ``map(..., chunksize=1)``. The number
  of loop iterations is calibrated to 20 ms in each measurement process (fastest of five
  trials), then the same 100 calls run serially in that process and through the pool; the
  sample is serial time ÷ pool time, the speedup (2.0 is perfect with 2 workers). It needs
  both CPUs of the 2-core machine to itself: any other load lowers every row, unevenly.
* ``pool-arrays-in`` and ``pool-arrays-out``: 16 numpy float64 arrays of 8 MB each, sent to
  the workers (``map(first_plus_last, arrays)``, which reads two elements: the transfer is what
  is timed, not a computation) or returned by them (``map(fresh_array, range(16))``, an
  ``np.full`` in the worker), in GB/s of array data (10^9 bytes). One untimed round comes
  first, then ten timed rounds. Ray's ``ray.util.multiprocessing.Pool(2)`` joins the peers
  here when it is installed (``ray.init(num_cpus=2)``, no dashboard, logs off; its start-up
  is not timed either): it moves large arguments and results through its shared-memory object
  store, and its rate varies widely from round to round (0.5 to over 4 GB/s on the 2-core
  machine of BENCHMARKS.md), hence the ten rounds. mpire runs with
  ``concatenate_numpy_output=False``, so that it returns the list of arrays like the others.
* ``pool-progress-cost``: polyproc only (``progress=`` is its extension; the other libraries
  are skipped): ``map(inc, 200,000 ints)`` with default chunking, with ``progress=True`` and
  without, alternately in one process (the order swapped every other pair). The sample is the
  extra time of the run with the bar, in percent of the run without, pair by pair. The bar is
  the one ``progress=True`` picks (tqdm's when tqdm is installed, else polyproc's text bar)
  and draws on ``sys.stderr``, redirected to a `io.StringIO` for the measurement; each timed
  run with the bar lasts until the final ``200000/200000`` line has been written (the bar is
  closed by the pool's manager thread), and fails if it never is.
* ``pool-imap-memory``: the parent's peak resident memory growth while ``imap(inc, ...,
  chunksize=1000)`` streams 10 million ints from a generator and ``sum`` consumes and drops
  the results. Pool API libraries, plus mpire's ``imap``; the executors and pebble are left
  out, since their ``map`` submits the whole input at once. After the pool is warmed, the
  kernel's peak (``VmHWM`` of ``/proc/self/status``) is reset to the current size by writing
  ``5`` to ``/proc/self/clear_refs``; the sample is ``VmHWM`` after the run minus ``VmRSS``
  before it, in MB (10^6 bytes). Where the reset is refused, the peak before the run is the
  baseline instead (growth below an earlier peak then goes unseen).

The functions run by the workers are at module level; this module imports only ``time`` at
the top (numpy is imported by the array workloads only), like the other topic modules.
"""

from __future__ import annotations

import time

from benchmarks._api import Unavailable, get_context, require
from benchmarks.bench_pool import (
    PEERS,
    START_METHOD,
    WORKERS,
    _close_join,
    _import,
    _inc,
    _make_adapter,
    _pool_adapter,
    _versions,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from io import StringIO
    from types import ModuleType
    from typing import Any

    from benchmarks._runner import Benchmark
    from benchmarks.bench_pool import _Adapter

#: One gigabyte, as in GB/s.
GB = 1_000_000_000
#: One megabyte, as in MB of memory growth.
MB = 1_000_000


# --- the functions the workers run ---------------------------------------------------------


def _spin(iterations: int) -> int:
    """The CPU-bound task: *iterations* steps of integer arithmetic on one small int."""
    acc = 0
    for i in range(iterations):
        acc = (acc * 31 + i) & 0xFFFF
    return acc


def _first_plus_last(array: Any) -> float:
    """A scalar that depends on the array but costs nothing next to receiving it."""
    return float(array[0] + array[-1])


def _fresh_array(elements: int, value: int) -> Any:
    """A new float64 array of *elements* items, all *value* (cheap: one fill)."""
    import numpy as np

    return np.full(elements, float(value))


# --- Ray, a peer for the array workloads -----------------------------------------------------


def _ray() -> _Adapter:
    """``ray.util.multiprocessing.Pool(2)`` on a local Ray started with 2 CPUs."""
    import logging
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no prompt, no network call
    ray = _import("ray")
    from ray.util.multiprocessing import Pool

    def create() -> Any:
        ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        return Pool(WORKERS)

    def close(pool: Any) -> None:
        pool.terminate()
        ray.shutdown()

    return _make_adapter(
        create=create,
        map=lambda pool, fn, items, chunksize=None: pool.map(fn, items, chunksize),
        imap_unordered=lambda pool, fn, items: pool.imap_unordered(fn, items, chunksize=1),
        submit=lambda pool, fn, x: pool.apply_async(fn, (x,)),
        get=lambda handle: handle.get(),
        close=close,
    )


#: Baseline label -> adapter factory, for the workloads that every peer can run.
ADAPTERS: dict[str, Callable[[], _Adapter]] = {**PEERS, "ray": _ray}


def _adapter(mod: ModuleType | None, label: str) -> _Adapter:
    """The adapter of library *mod*, or of the baseline *label* when *mod* is None."""
    return _pool_adapter(mod) if mod is not None else ADAPTERS[label]()


# --- measurements ----------------------------------------------------------------------------


def _calibrate(seconds: float) -> int:
    """How many `_spin` iterations take *seconds* here (fastest of five trials)."""
    trial = 20_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        _spin(trial)
        best = min(best, time.perf_counter() - t0)
    return max(1, round(trial * seconds / best))


def _speedup(adapter: _Adapter, *, tasks: int, seconds: float, rounds: int) -> list[float]:
    """Serial time ÷ pool time of *tasks* `_spin` calls of about *seconds*, *rounds* times."""
    iterations = _calibrate(seconds)
    expected = _spin(iterations)
    items = [iterations] * tasks
    pool = adapter.create()
    samples: list[float] = []
    try:
        warm = list(adapter.map(pool, _spin, [1] * WORKERS, 1))
        if warm != [_spin(1)] * WORKERS:
            raise RuntimeError(f"warm-up returned {warm!r}")
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            serial = [_spin(n) for n in items]
            t1 = time.perf_counter_ns()
            parallel = list(adapter.map(pool, _spin, items, 1))
            t2 = time.perf_counter_ns()
            if serial != parallel or parallel != [expected] * tasks:
                raise RuntimeError(f"map returned {len(parallel)} results, not {tasks} "
                                   f"times {expected}")
            samples.append((t1 - t0) / (t2 - t1))
    finally:
        adapter.close(pool)
    return samples


def _arrays(adapter: _Adapter, *, direction: str, arrays: int, megabytes: int,
            rounds: int) -> list[float]:
    """GB/s of *arrays* float64 arrays of *megabytes* MB each, sent in or returned out."""
    import functools

    import numpy as np

    elements = megabytes * MB // 8
    if direction == "in":
        data: list[Any] = [np.full(elements, float(i)) for i in range(arrays)]
        fn: Callable[[Any], Any] = _first_plus_last
    elif direction == "out":
        data = list(range(arrays))
        fn = functools.partial(_fresh_array, elements)
    else:
        raise ValueError(f"unknown direction {direction!r}")
    pool = adapter.create()
    samples: list[float] = []
    try:
        for round_ in range(1 + rounds):  # the first round warms the pool up, untimed
            t0 = time.perf_counter_ns()
            results = list(adapter.map(pool, fn, data))
            t1 = time.perf_counter_ns()
            if direction == "in":
                ok = results == [2.0 * i for i in range(arrays)]
            else:
                ok = len(results) == arrays and all(
                    r.shape == (elements,) and r[0] == i and r[-1] == i
                    for i, r in enumerate(results)
                )
            if not ok:
                raise RuntimeError(f"map of {arrays} arrays ({direction}) returned wrong results")
            del results
            if round_:
                samples.append(arrays * elements * 8 / GB / ((t1 - t0) / 1e9))
    finally:
        adapter.close(pool)
    return samples


def _bar_drawn(stream: StringIO, items: int, deadline: float) -> None:
    """Wait until *stream* holds a finished bar for *items* items, or raise at *deadline*."""
    done = f"{items}/{items}"
    while True:
        text = stream.getvalue()
        if done in text and text.endswith("\n"):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no finished progress bar was drawn; the stream holds {text!r}")
        time.sleep(0)


def _progress_cost(mod: ModuleType, *, items: int, pairs: int) -> list[float]:
    """Percent extra time of ``map(inc, items)`` with ``progress=True``, per pair of runs."""
    import contextlib
    import io

    ctx = get_context(mod, START_METHOD)
    require(ctx, "Pool")
    data = list(range(items))
    stream = io.StringIO()
    pool = ctx.Pool(WORKERS)
    samples: list[float] = []
    try:
        try:
            warm = pool.map(_inc, data[:WORKERS], progress=False)
        except TypeError as exc:
            raise Unavailable(f"{mod.__name__} Pool.map has no progress= ({exc})") from exc
        with contextlib.redirect_stderr(stream):
            warm += pool.map(_inc, data[:WORKERS], progress=True)  # imports tqdm, if any
            _bar_drawn(stream, WORKERS, time.monotonic() + 10)
            for pair in range(pairs):
                elapsed = {}
                for progress in (False, True) if pair % 2 == 0 else (True, False):
                    stream.seek(0)
                    stream.truncate()
                    t0 = time.perf_counter_ns()
                    results = pool.map(_inc, data, progress=progress)
                    if progress:
                        _bar_drawn(stream, items, time.monotonic() + 10)
                    t1 = time.perf_counter_ns()
                    if results != [x + 1 for x in data]:
                        raise RuntimeError(f"map(progress={progress}) returned wrong results")
                    elapsed[progress] = t1 - t0
                samples.append((elapsed[True] / elapsed[False] - 1) * 100)
        if warm != [1, 2] * 2:
            raise RuntimeError(f"warm-up returned {warm!r}")
    finally:
        _close_join(pool)
    return samples


def _status_kb(field: str) -> int:
    """The value of *field* (``VmRSS``, ``VmHWM``) in ``/proc/self/status``, in kB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
    raise Unavailable(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Reset the peak resident size to the current one if allowed; return the baseline, kB."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return _status_kb("VmHWM")
    return _status_kb("VmRSS")


def _imap_memory(imap: Callable[[Any], Any], *, items: int, chunksize: int) -> list[float]:
    """MB of peak resident growth while ``imap(generator)`` streams *items* ints, summed."""
    import gc

    warm = sum(imap(iter(range(WORKERS * chunksize))))
    _check_sum(warm, WORKERS * chunksize, "warm-up imap")
    gc.collect()
    before = _reset_peak()
    total = sum(imap(i for i in range(items)))
    peak = _status_kb("VmHWM")
    _check_sum(total, items, "imap")
    return [(peak - before) * 1024 / MB]


def _check_sum(total: int, n: int, what: str) -> None:
    """Raise unless *total* is the sum of `_inc` over ``range(n)``."""
    if total != n * (n + 1) // 2:
        raise RuntimeError(f"{what} results sum to {total}, not {n * (n + 1) // 2}")


# --- entry points ----------------------------------------------------------------------------


def _run(mod: ModuleType | None, label: str, *, kind: str, **params: Any) -> list[float]:
    """Dispatch workload *kind* for library *mod*, or for baseline *label* (*mod* None)."""
    if kind == "speedup":
        return _speedup(_adapter(mod, label), **params)
    if kind == "arrays":
        return _arrays(_adapter(mod, label), **params)
    raise ValueError(f"unknown workload kind {kind!r}")


def measure_pool(mod: ModuleType, **params: Any) -> list[float]:
    """A library of the runner, through ``mod.get_context("fork").Pool(2)``."""
    return _run(mod, "", **params)


def measure_progress_cost(mod: ModuleType, **params: Any) -> list[float]:
    """polyproc's ``map(..., progress=True)`` against ``progress=False``; others skip."""
    return _progress_cost(mod, **params)


def measure_imap_memory(mod: ModuleType, *, items: int, chunksize: int) -> list[float]:
    """Peak memory growth of ``mod.get_context("fork").Pool(2).imap`` over a generator."""
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Pool")
    pool = ctx.Pool(WORKERS)
    try:
        return _imap_memory(lambda it: pool.imap(_inc, it, chunksize), items=items,
                            chunksize=chunksize)
    finally:
        _close_join(pool)


def baseline_concurrent_futures(**params: Any) -> list[float]:
    """``concurrent.futures.ProcessPoolExecutor``, fork context."""
    return _run(None, "concurrent.futures", **params)


def baseline_polyproc_executor(**params: Any) -> list[float]:
    """``polyproc.pool.PoolExecutor``, fork context."""
    return _run(None, "polyproc PoolExecutor", **params)


def baseline_loky(**params: Any) -> list[float]:
    """``loky.ProcessPoolExecutor`` (its own ``loky`` start method)."""
    return _run(None, "loky", **params)


def baseline_pebble(**params: Any) -> list[float]:
    """``pebble.ProcessPool``, fork context."""
    return _run(None, "pebble", **params)


def baseline_mpire(**params: Any) -> list[float]:
    """``mpire.WorkerPool``, fork, ``keep_alive=True``."""
    return _run(None, "mpire", **params)


def baseline_ray(**params: Any) -> list[float]:
    """``ray.util.multiprocessing.Pool`` on a local Ray with 2 CPUs."""
    return _run(None, "ray", **params)


def baseline_mpire_imap_memory(*, items: int, chunksize: int) -> list[float]:
    """Peak memory growth of mpire's ``imap`` over a generator, fork, 2 workers."""
    mpire = _import("mpire")
    pool = mpire.WorkerPool(n_jobs=WORKERS, start_method=START_METHOD, keep_alive=True)
    try:
        return _imap_memory(lambda it: pool.imap(_inc, it, chunk_size=chunksize), items=items,
                            chunksize=chunksize)
    finally:
        pool.stop_and_join()


# --- registration ----------------------------------------------------------------------------


def _version(name: str) -> str:
    """*name* and its installed version, for the titles, read without importing it."""
    import importlib.metadata

    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} not installed"


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
    arrays = (f"16 float64 arrays of 8 MB; one untimed round first; {warm}; "
              f"{setup}, {_version('ray')} (ray.init(num_cpus={WORKERS}), not timed)")
    return [
        Benchmark(
            name="pool-20ms-tasks",
            title=f"map(spin, 100 CPU-bound pure-Python tasks of ~20 ms, chunksize=1) "
            f"(executors: map, chunksize 1) against the same 100 calls run serially in the "
            f"same process; sample = serial time ÷ pool time (2.00 perfect, target >= 1.9); "
            f"{warm}; {setup}",
            unit="speedup (serial time ÷ pool time)",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "speedup", "tasks": 100, "seconds": 0.02, "rounds": 1},
            quick_params={"kind": "speedup", "tasks": 20, "seconds": 0.005, "rounds": 1},
            baselines=peers,
        ),
        Benchmark(
            name="pool-arrays-in",
            title=f"map(first_plus_last, arrays), default chunking: arrays to the workers, a "
            f"float back; {arrays}",
            unit="GB/s of array data",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "arrays", "direction": "in", "arrays": 16, "megabytes": 8,
                    "rounds": 10},
            quick_params={"kind": "arrays", "direction": "in", "arrays": 16, "megabytes": 1,
                          "rounds": 1},
            baselines={**peers, "ray": baseline_ray},
        ),
        Benchmark(
            name="pool-arrays-out",
            title=f"map(fresh_array, range(16)), default chunking: ints to the workers, each "
            f"returns a new np.full array; {arrays}",
            unit="GB/s of array data",
            higher_is_better=True,
            measure=measure_pool,
            params={"kind": "arrays", "direction": "out", "arrays": 16, "megabytes": 8,
                    "rounds": 10},
            quick_params={"kind": "arrays", "direction": "out", "arrays": 16, "megabytes": 1,
                          "rounds": 1},
            baselines={**peers, "ray": baseline_ray},
        ),
        Benchmark(
            name="pool-progress-cost",
            title=f"polyproc only: map(inc, 200,000 ints), default chunking, progress=True "
            f"(bar drawn to an in-memory stderr) against progress=False, alternating in one "
            f"process; sample = extra time with the bar, per pair (target <= 5%); {warm}; "
            f"{WORKERS} workers, {START_METHOD}",
            unit="% extra time with progress=True",
            higher_is_better=False,
            measure=measure_progress_cost,
            params={"items": 200_000, "pairs": 100},
            quick_params={"items": 2_000, "pairs": 4},
        ),
        Benchmark(
            name="pool-imap-memory",
            title=f"peak resident memory growth of the parent while imap(inc, generator of "
            f"10,000,000 ints, chunksize=1000) runs and sum() drops the results (mpire: its "
            f"imap, chunk_size=1000; executors and pebble left out: they submit everything "
            f"at once); target for polyproc: <= 50 MB; {warm}; {WORKERS} workers, "
            f"{START_METHOD}; {_version('mpire')}",
            unit="MB of peak RSS growth",
            higher_is_better=False,
            measure=measure_imap_memory,
            params={"items": 10_000_000, "chunksize": 1000},
            quick_params={"items": 100_000, "chunksize": 1000},
            baselines={"mpire": baseline_mpire_imap_memory},
        ),
    ]
