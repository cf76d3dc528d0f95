"""polyproc's Dask engine (``Pool(cluster=...)``) and its ``polyproc map`` command line.

The standard library has no cluster engine and no such command, so these benchmarks take
their ratios against a row of their own (`benchmarks._runner.Benchmark.reference`), named in
each table's ratio column: a hand-written Dask program, the Dask engine itself, or a
hand-written Pool program. The other libraries of the runner are skipped (`Unavailable`).

The cluster: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
dashboard_address=None)``, its scheduler in the measuring process (Dask's default), and one
``distributed.Client`` on it, shared by every way of mapping measured in that process (the
Pool gets the client itself: ``Pool(cluster=client)``). It is started once per measurement
process and never timed: each way of mapping first runs one full untimed round of the
operation about to be timed (warm-up: functions imported by the workers, connections open),
then the timed rounds. Every result is checked against the expected list. Futures are
submitted with ``pure=False``: identical keys from one round to the next would let Dask hand
back results it still holds instead of computing them again.

* ``dask-tiny-tasks``: 2,000 tiny tasks (``inc``, one addition), seconds per complete map.
  Rows: ``dask Client.map`` -- the reference: ``client.gather(client.map(inc, items))``, one
  Dask task per item, as one would write it by hand; ``polyproc`` --
  ``Pool(cluster=client).map(inc, items)`` with polyproc's default chunking (ceil(n / (16 x
  2 threads)) items per task: 63 here, 32 Dask tasks); ``polyproc chunksize=1`` -- the same
  with ``chunksize=1``, one Dask task per item like the reference, so its ratio is the
  engine's own cost per task (the 10% target applies to this row); ``dask Client.map,
  chunks`` -- a fairer hand-written baseline for the ``polyproc`` row: ``client.map`` over
  the same 63-item chunks, each task a list comprehension, results flattened (the ``polyproc``
  row divided by this one is the engine's cost at equal chunking).
* ``dask-20ms-tasks``: 100 pure-Python CPU-bound tasks of about 20 ms (``spin``, the
  integer loop of `benchmarks.bench_pool_workloads`), seconds per complete map (about 1 s
  when both workers have a CPU each). The loop count is calibrated to 20 ms once, in the
  runner's process when the benchmarks are registered (fastest of five trials), and passed to
  every measurement: the rows compare absolute times, so they must all do the same work (a
  calibration in each measuring process varied by a few percent under load). The same four
  rows; the ``polyproc`` default chunking gives 4 tasks per chunk (25 Dask tasks). Target:
  ``polyproc chunksize=1`` at most 10% over the reference.
* ``dask-vs-ray-tiny-tasks`` and ``dask-vs-ray-20ms-tasks``: the same two workloads through
  ``ray.util.multiprocessing.Pool(2)`` (``ray.init(num_cpus=2)``, no dashboard, not timed;
  the adapter of `benchmarks.bench_pool_workloads`), against polyproc's Dask-engine Pool on
  the cluster above, the reference here. Tiny tasks: each library's default chunking (Ray:
  ceil(n / (4 x 2 actors)) items per chunk); 20 ms tasks: ``chunksize=1`` on both.
  Informational: two different engines, each with its own 2 worker processes.
* ``map-cli-100k``: ``python -m polyproc map polyproc._cli.examples:sha256 INPUT -o
  /dev/null --no-progress -j 2`` over a file of 100,000 short lines, timed as a subprocess
  from start to exit (interpreter start-up, imports, pool start-up and shut-down included),
  against the reference ``direct Pool.imap``: the same job written against ``polyproc.Pool(2)``
  (read the lines, ``imap(sha256, lines, 1)`` as the command does, ``json.dumps({"index": i,
  "result": r})`` of each result in the parent, one line written each), also run as
  ``python -c`` so that start-up counts on both sides. Both use polyproc's default start
  method. Before the timed runs each side runs once, untimed, over the first 1,000 lines into
  a file that is checked line by line. Target: the command within 20% of the direct version.

The functions run by the workers (``inc``, ``spin``, the chunk runner) are module-level
functions, imported by the Dask workers by name (the runner puts this project on their
``PYTHONPATH``). This module imports only ``time`` at the top, like the other topic modules;
Dask, Ray and polyproc are imported by the measurements that use them.
"""

from __future__ import annotations

import time

from benchmarks._api import Unavailable
from benchmarks.bench_pool import WORKERS, _import, _inc
from benchmarks.bench_pool_workloads import _calibrate, _ray, _spin

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    from benchmarks._runner import Benchmark

    #: ``run(fn, items) -> results``: one complete map, the operation being timed.
    _Map = Callable[[Callable[[int], int], list[int]], list[int]]

#: polyproc's default map chunking makes this many chunks per worker thread.
CHUNKS_PER_THREAD = 16
#: The function ``polyproc map`` applies in ``map-cli-100k``, and the direct version too.
CLI_TARGET = "polyproc._cli.examples:sha256"

#: The ``map-cli-100k`` reference, run as ``python -c SCRIPT INPUT OUTPUT``: the job of the
#: command, written directly against polyproc's Pool.
DIRECT_SCRIPT = """\
import json
import sys

import polyproc
from polyproc._cli.examples import sha256


def lines(path):
    with open(path, encoding="utf-8") as source:
        for line in source:
            yield line.rstrip("\\r\\n")


if __name__ == "__main__":
    with polyproc.Pool(2) as pool, open(sys.argv[2], "w", encoding="utf-8") as out:
        for index, result in enumerate(pool.imap(sha256, lines(sys.argv[1]), 1)):
            out.write(json.dumps({"index": index, "result": result}))
            out.write("\\n")
"""


# --- the functions the workers run ---------------------------------------------------------


def _map_chunk(fn: Callable[[int], int], chunk: list[int]) -> list[int]:
    """One hand-made chunk of ``dask Client.map, chunks``: *fn* over every item."""
    return [fn(x) for x in chunk]


# --- the workloads -------------------------------------------------------------------------


def _workload(workload: str, tasks: int, iterations: int) -> tuple[Callable[[int], int],
                                                                      list[int], list[int]]:
    """The function, the items and the expected results of *workload* (``tiny``, ``spin``)."""
    if workload == "tiny":
        items = list(range(tasks))
        return _inc, items, [x + 1 for x in items]
    if workload == "spin":
        return _spin, [iterations] * tasks, [_spin(iterations)] * tasks
    raise ValueError(f"unknown workload {workload!r}")


def _default_chunksize(items: int) -> int:
    """The chunk size polyproc's ``map`` picks for *items* items on a 2-thread cluster."""
    chunksize, extra = divmod(items, WORKERS * CHUNKS_PER_THREAD)
    return max(1, chunksize + (1 if extra else 0))


def _rounds(run: _Map, *, workload: str, tasks: int, rounds: int,
            iterations: int = 0) -> list[float]:
    """Seconds per complete ``run`` of *workload*, *rounds* times after one untimed round."""
    fn, items, expected = _workload(workload, tasks, iterations)
    samples: list[float] = []
    for round_ in range(1 + rounds):
        t0 = time.perf_counter_ns()
        results = run(fn, items)
        t1 = time.perf_counter_ns()
        if results != expected:
            raise RuntimeError(f"round {round_} returned {len(results)} results, not the "
                               f"{len(expected)} expected")
        if round_:
            samples.append((t1 - t0) / 1e9)
    return samples


# --- the engines ---------------------------------------------------------------------------


def _start_cluster() -> tuple[Any, Any]:
    """A new LocalCluster of 2 single-thread worker processes, and a ``Client`` on it."""
    import logging

    distributed = _import("distributed")
    local = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.ERROR)
    try:
        client = distributed.Client(local, set_as_default=False)
        client.wait_for_workers(WORKERS, timeout=60)
    except BaseException:
        local.close()
        raise
    return local, client


def _client_map(client: Any) -> _Map:
    """``dask Client.map``: one Dask task per item, gathered."""
    def run(fn: Callable[[int], int], items: list[int]) -> list[int]:
        return list(client.gather(client.map(fn, items, pure=False)))

    return run


def _client_map_chunks(client: Any) -> _Map:
    """``dask Client.map, chunks``: one Dask task per chunk of polyproc's default size."""
    import functools

    def run(fn: Callable[[int], int], items: list[int]) -> list[int]:
        size = _default_chunksize(len(items))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        parts = client.gather(client.map(functools.partial(_map_chunk, fn), chunks, pure=False))
        return [x for part in parts for x in part]

    return run


def _require_cluster_engine(mod: ModuleType) -> None:
    """Raise `Unavailable` unless *mod*'s Pool class takes ``cluster=`` (checked before a
    cluster starts; ``mod.Pool`` itself is a context's method that passes keywords on)."""
    import importlib
    import inspect

    try:
        pool_class = importlib.import_module(f"{mod.__name__}.pool").Pool
        accepts = "cluster" in inspect.signature(pool_class).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        accepts = False
    if not accepts:
        raise Unavailable(f"{mod.__name__}.Pool has no cluster= (no Dask engine)")


def _on_dask(mod: ModuleType | None, way: str, params: dict[str, Any]) -> list[float]:
    """Time *way* of mapping (``polyproc``, ``polyproc-1``, ``client-map``, ``client-chunks``)
    on a new cluster; *mod* is the library for the Pool rows (None: import polyproc)."""
    if way in ("polyproc", "polyproc-1"):
        mod = mod if mod is not None else _import("polyproc")
        _require_cluster_engine(mod)
    local, client = _start_cluster()
    try:
        if mod is None:
            run = (_client_map if way == "client-map" else _client_map_chunks)(client)
            return _rounds(run, **params)
        pool = mod.Pool(cluster=client)
        chunksize = 1 if way == "polyproc-1" else None
        try:
            return _rounds(lambda fn, items: pool.map(fn, items, chunksize), **params)
        finally:
            pool.close()
            pool.join()
    finally:
        client.close()
        local.close()


def _on_ray(*, chunksize: int | None, **params: Any) -> list[float]:
    """Time ``ray.util.multiprocessing.Pool(2).map`` (its default chunking if None)."""
    adapter = _ray()
    pool = adapter.create()
    try:
        return _rounds(lambda fn, items: list(adapter.map(pool, fn, items, chunksize)), **params)
    finally:
        adapter.close(pool)


# --- the command line ----------------------------------------------------------------------


def _write_lines(path: str, lines: int) -> list[str]:
    """Write *lines* short distinct lines to *path*; return them."""
    text = [f"item {i:06d} of the polyproc map benchmark" for i in range(lines)]
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in text)
    return text


def _command(way: str, source: str, output: str) -> list[str]:
    """The argv of the job: ``polyproc map`` (``cli``) or the direct script (``direct``)."""
    import sys

    if way == "cli":
        return [sys.executable, "-m", "polyproc", "map", CLI_TARGET, source, "-o", output,
                "--no-progress", "-j", str(WORKERS)]
    if way == "direct":
        return [sys.executable, "-c", DIRECT_SCRIPT, source, output]
    raise ValueError(f"unknown way {way!r}")


def _run_job(argv: list[str]) -> float:
    """Run *argv* to its end; return its wall time in seconds, or raise if it failed."""
    import subprocess

    t0 = time.perf_counter_ns()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    t1 = time.perf_counter_ns()
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{argv[1:4]} exited with {done.returncode}: {' '.join(tail)}")
    return (t1 - t0) / 1e9


def _map_job(way: str, *, lines: int, check_lines: int, runs: int) -> list[float]:
    """Seconds per run of the *way* job over *lines* lines, *runs* times after a checked one."""
    import hashlib
    import json
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="polyproc-bench-map-") as folder:
        small, checked = os.path.join(folder, "small.txt"), os.path.join(folder, "out.jsonl")
        text = _write_lines(small, check_lines)
        _run_job(_command(way, small, checked))
        with open(checked, encoding="utf-8") as out:
            records = [json.loads(line) for line in out]
        expected = [{"index": i, "result": hashlib.sha256(line.encode()).hexdigest()}
                    for i, line in enumerate(text)]
        if records != expected:
            raise RuntimeError(f"the {way} job wrote {len(records)} records, not the "
                               f"{len(expected)} expected")
        source = os.path.join(folder, "input.txt")
        _write_lines(source, lines)
        return [_run_job(_command(way, source, os.devnull)) for _ in range(runs)]


# --- entry points ----------------------------------------------------------------------------


def measure_dask(mod: ModuleType, **params: Any) -> list[float]:
    """``mod.Pool(cluster=client).map`` with default chunking; polyproc only."""
    return _on_dask(mod, "polyproc", params)


def measure_map_cli(mod: ModuleType, **params: Any) -> list[float]:
    """``python -m polyproc map``; polyproc only."""
    if mod.__name__ != "polyproc":
        raise Unavailable(f"{mod.__name__} has no map command line")
    return _map_job("cli", **params)


def baseline_client_map(**params: Any) -> list[float]:
    """``client.gather(client.map(fn, items))``: one Dask task per item."""
    return _on_dask(None, "client-map", params)


def baseline_client_map_chunks(**params: Any) -> list[float]:
    """``client.map`` over chunks of polyproc's default size, flattened."""
    return _on_dask(None, "client-chunks", params)


def baseline_polyproc_chunk1(**params: Any) -> list[float]:
    """``polyproc.Pool(cluster=client).map(fn, items, chunksize=1)``."""
    return _on_dask(None, "polyproc-1", params)


def baseline_ray(*, chunksize: int | None, **params: Any) -> list[float]:
    """``ray.util.multiprocessing.Pool(2).map`` on a local Ray with 2 CPUs."""
    return _on_ray(chunksize=chunksize, **params)


def measure_dask_for_ray(mod: ModuleType, *, chunksize: int | None,
                         **params: Any) -> list[float]:
    """``mod.Pool(cluster=client).map`` with *chunksize* (None: default); polyproc only."""
    return _on_dask(mod, "polyproc-1" if chunksize == 1 else "polyproc", params)


def baseline_direct_imap(**params: Any) -> list[float]:
    """The ``polyproc map`` job written directly against ``polyproc.Pool(2).imap``."""
    return _map_job("direct", **params)


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

    reference = "dask Client.map"
    spin_20ms = _calibrate(0.02)  # the same work for every row and repeat of this run
    spin = {"workload": "spin", "tasks": 100, "iterations": spin_20ms, "rounds": 3}
    spin_quick = {"workload": "spin", "tasks": 20, "iterations": spin_20ms // 4, "rounds": 1}
    rows = {
        reference: baseline_client_map,
        "dask Client.map, chunks": baseline_client_map_chunks,
        "polyproc chunksize=1": baseline_polyproc_chunk1,
    }
    cluster = (f"LocalCluster({WORKERS} worker processes x 1 thread), started and warmed "
               f"(one untimed round) before the timed rounds; {_version('distributed')}")
    rows_text = ("rows: dask Client.map = client.map(f, items) + gather, one Dask task per "
                 "item (reference); polyproc = Pool(cluster=client).map(f, items), default "
                 "chunking ({}); polyproc chunksize=1 = the same, one Dask task per item "
                 "(target: <= 1.10x the reference); dask Client.map, chunks = client.map "
                 "over polyproc's default chunks")
    ray = (f"start-up excluded; polyproc: Pool(cluster=client) on a {cluster}; ray: "
           f"ray.util.multiprocessing.Pool({WORKERS}), ray.init(num_cpus={WORKERS}), "
           f"{_version('ray')}; informational")
    return [
        Benchmark(
            name="dask-tiny-tasks",
            title=f"2,000 tiny tasks (inc) on a Dask {cluster}; "
            + rows_text.format("63 items per task, 32 tasks"),
            unit="seconds per map",
            higher_is_better=False,
            measure=measure_dask,
            params={"workload": "tiny", "tasks": 2_000, "rounds": 5},
            quick_params={"workload": "tiny", "tasks": 200, "rounds": 1},
            baselines=rows,
            reference=reference,
        ),
        Benchmark(
            name="dask-20ms-tasks",
            title=f"100 pure-Python CPU-bound tasks of ~20 ms (spin, {spin_20ms:,} iterations, "
            f"calibrated once by the runner) on a Dask "
            f"{cluster}; " + rows_text.format("4 items per task, 25 tasks"),
            unit="seconds per map",
            higher_is_better=False,
            measure=measure_dask,
            params=spin,
            quick_params=spin_quick,
            baselines=rows,
            reference=reference,
        ),
        Benchmark(
            name="dask-vs-ray-tiny-tasks",
            title=f"2,000 tiny tasks (inc), map with each library's default chunking: "
            f"polyproc's Dask engine (reference) against Ray's Pool; {ray}",
            unit="seconds per map",
            higher_is_better=False,
            measure=measure_dask_for_ray,
            params={"workload": "tiny", "tasks": 2_000, "rounds": 5, "chunksize": None},
            quick_params={"workload": "tiny", "tasks": 200, "rounds": 1, "chunksize": None},
            baselines={"ray Pool": baseline_ray},
            reference="polyproc",
        ),
        Benchmark(
            name="dask-vs-ray-20ms-tasks",
            title=f"100 CPU-bound tasks of ~20 ms (spin, {spin_20ms:,} iterations), "
            f"map(chunksize=1): polyproc's Dask engine (reference) against Ray's Pool; {ray}",
            unit="seconds per map",
            higher_is_better=False,
            measure=measure_dask_for_ray,
            params={**spin, "chunksize": 1},
            quick_params={**spin_quick, "chunksize": 1},
            baselines={"ray Pool": baseline_ray},
            reference="polyproc",
        ),
        Benchmark(
            name="map-cli-100k",
            title=f"polyproc row: python -m polyproc map {CLI_TARGET} over a 100,000-line "
            f"file, -o /dev/null --no-progress -j {WORKERS}; direct Pool.imap (reference): "
            f"the same job as a python -c script on polyproc.Pool({WORKERS}).imap(sha256, "
            f"lines, 1) + json.dumps per result in the parent; each timed as a subprocess "
            f"from start to exit (start-up included), after one checked run over 1,000 "
            f"lines; target: polyproc <= 1.20x the reference",
            unit="seconds per job",
            higher_is_better=False,
            measure=measure_map_cli,
            params={"lines": 100_000, "check_lines": 1_000, "runs": 10},
            quick_params={"lines": 5_000, "check_lines": 100, "runs": 1},
            baselines={"direct Pool.imap": baseline_direct_imap},
            reference="direct Pool.imap",
        ),
    ]
