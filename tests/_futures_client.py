"""A program written for the standard library, run by tests/test_install.py under
``polyproc run``: it uses concurrent.futures.ProcessPoolExecutor and multiprocessing as
any program would, and prints what it saw as one JSON line.

Usage: ``python -m polyproc run tests/_futures_client.py SCENARIO START_METHOD``
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool


def square(x: int) -> int:
    return x * x


def fail(x: int) -> int:
    raise ValueError(f"bad input {x}")


def suicide(_: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def whoami(_: int) -> list[str]:
    return [multiprocessing.current_process().name, multiprocessing.__name__]


_initialized = "no"


def init(value: str) -> None:
    global _initialized
    _initialized = value


def initialized(_: int) -> str:
    return _initialized


def getpid(_: int) -> int:
    return os.getpid()


def scenario_map(context: multiprocessing.context.BaseContext) -> object:
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        return list(pool.map(square, range(20), chunksize=3))


def scenario_default(context: multiprocessing.context.BaseContext) -> object:
    with ProcessPoolExecutor(2) as pool:  # the executor picks the default context itself
        return [pool.submit(square, 7).result(timeout=30), pool.submit(whoami, 0).result()]


def scenario_exception(context: multiprocessing.context.BaseContext) -> object:
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        future = pool.submit(fail, 3)
        error = future.exception(timeout=30)
        return [type(error).__name__, str(error), "fail" in str(error.__cause__)]


def scenario_unpicklable(context: multiprocessing.context.BaseContext) -> object:
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        future = pool.submit(square, threading.Lock())
        error = future.exception(timeout=30)
        after = pool.submit(square, 5).result(timeout=30)  # the pool is still usable
        return [isinstance(error, TypeError), after]


def scenario_killed(context: multiprocessing.context.BaseContext) -> object:
    pool = ProcessPoolExecutor(2, mp_context=context)
    try:
        assert pool.submit(square, 2).result(timeout=30) == 4
        error = pool.submit(suicide, 0).exception(timeout=30)
        later = None
        try:
            pool.submit(square, 3)
        except BrokenProcessPool as exc:
            later = type(exc).__name__
        return [type(error).__name__, later]
    finally:
        pool.shutdown(wait=True)


def scenario_initializer(context: multiprocessing.context.BaseContext) -> object:
    with ProcessPoolExecutor(2, mp_context=context, initializer=init, initargs=("yes",)) as pool:
        return sorted(set(pool.map(initialized, range(8))))


def scenario_max_tasks(context: multiprocessing.context.BaseContext) -> object:
    if context.get_start_method() == "fork":
        return "n/a"  # the stdlib refuses max_tasks_per_child with fork
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=2) as pool:
        pids = [pool.submit(getpid, i).result(timeout=30) for i in range(6)]
    return len(set(pids))


def scenario_cancel(context: multiprocessing.context.BaseContext) -> object:
    pool = ProcessPoolExecutor(1, mp_context=context)
    futures = [pool.submit(square, i) for i in range(200)]
    pool.shutdown(wait=True, cancel_futures=True)
    done = [f for f in futures if not f.cancelled()]
    return [all(f.result() == i * i for i, f in enumerate(done)), len(done) <= 200]


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


if __name__ == "__main__":
    scenario, method = sys.argv[1], sys.argv[2]
    multiprocessing.set_start_method(method)
    result = SCENARIOS[scenario](multiprocessing.get_context(method))
    print(json.dumps({"result": result, "multiprocessing": multiprocessing.__name__}))
