"""Pool faults that must neither hang the pool nor lose a task, under every start method:
a worker stuck on one task, results that do not unpickle in the parent, workers that die
while starting, and imap's read-ahead over an endless input."""

from __future__ import annotations

import itertools
import os
import pathlib
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

import polyproc
from polyproc.exceptions import InitializerError, ProcessError, SerializationError
from tests import _fault_workers as fw

_REPO = pathlib.Path(__file__).resolve().parent.parent


# -- 1. a worker stuck on a task holds no other task back --------------------------------
def _start_stuck_task(pool: Any, tmp_path: pathlib.Path) -> Any:
    """Submit a task that never returns; return its result once it runs in a worker."""
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    stuck = pool.apply_async(fw.block_forever, (str(fifo),))
    with open(fifo) as pipe:  # blocks until the task has opened the other end
        assert pipe.readline() == "started\n"
    return stuck


def test_map_completes_while_a_worker_is_stuck(ctx, tmp_path):
    """Tasks queued behind a task that never returns are taken back and run by the idle
    worker: map returns; the stuck task fails when the pool is terminated."""
    pool = ctx.Pool(2)
    try:
        stuck = _start_stuck_task(pool, tmp_path)
        began = time.monotonic()
        assert pool.map(fw.square, range(100)) == [x * x for x in range(100)]
        # Many small batches, one task each, so that several queue behind the stuck one.
        assert pool.map(fw.square, range(100), chunksize=1) == [x * x for x in range(100)]
        assert list(pool.imap(fw.square, range(200))) == [x * x for x in range(200)]
        assert time.monotonic() - began < 20
        assert not stuck.ready()
    finally:
        pool.terminate()
    with pytest.raises(ProcessError, match="terminated"):
        stuck.get(timeout=10)


def test_apply_async_runs_elsewhere_while_a_worker_is_stuck(ctx, tmp_path):
    """Single tasks submitted one by one are not lost behind the stuck one either; each
    runs exactly once."""
    with ctx.Pool(2) as pool:
        _start_stuck_task(pool, tmp_path)
        results = [pool.apply_async(fw.square, (x,)) for x in range(50)]
        assert [r.get(timeout=20) for r in results] == [x * x for x in range(50)]
        assert pool.statistics().tasks_done >= 50


# -- 2. a result that does not unpickle in the parent fails its task alone --------------
def _check_unpickling_error(exc: BaseException) -> None:
    assert isinstance(exc, SerializationError)
    assert "Unloadable" in str(exc)
    assert isinstance(exc.__cause__, RuntimeError)
    assert "refuses to be unpickled" in str(exc.__cause__)


def test_apply_async_result_that_does_not_unpickle(ctx):
    with ctx.Pool(2) as pool:
        result = pool.apply_async(fw.return_unloadable)
        with pytest.raises(SerializationError) as caught:
            result.get(timeout=30)
        _check_unpickling_error(caught.value)
        assert pool.apply(fw.square, (7,)) == 49  # the pool goes on
        assert pool.statistics().restarts == 0


def test_map_with_one_result_that_does_not_unpickle(ctx):
    with ctx.Pool(2) as pool:
        with pytest.raises(SerializationError) as caught:
            pool.map(_partial_unloadable(5), range(40), chunksize=4)
        _check_unpickling_error(caught.value)
        assert "item" in str(caught.value)
        assert pool.map(fw.square, range(40)) == [x * x for x in range(40)]


def _partial_unloadable(bad: int) -> Any:
    import functools

    return functools.partial(fw.unloadable_at, bad)


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_imap_with_one_result_that_does_not_unpickle(ctx, method):
    """Only the bad item fails; the other items of the same batches arrive."""
    with ctx.Pool(2) as pool:
        # Warm up the task-time estimate so that imap groups many tasks per batch.
        pool.map(fw.square, range(2000))
        outcomes: list[Any] = []
        iterator = getattr(pool, method)(_partial_unloadable(123), range(500))
        while True:
            try:
                outcomes.append(iterator.next(timeout=30))
            except StopIteration:
                break
            except SerializationError as exc:
                outcomes.append(exc)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1
        _check_unpickling_error(errors[0])
        good = [o for o in outcomes if not isinstance(o, BaseException)]
        assert sorted(good) == [x * x for x in range(500) if x != 123]
        if method == "imap":
            assert outcomes.index(errors[0]) == 123
        assert pool.apply(fw.square, (3,)) == 9


def test_exception_that_does_not_unpickle_in_the_parent(ctx, monkeypatch):
    monkeypatch.setenv(fw.PARENT_PID_VARIABLE, str(os.getpid()))
    with ctx.Pool(2) as pool:
        with pytest.raises(SerializationError) as caught:
            pool.apply(fw.raise_parent_refusing)
        assert "ParentRefusingError" in str(caught.value)
        assert isinstance(caught.value.__cause__, RuntimeError)
        assert pool.apply(fw.square, (4,)) == 16


# -- 3. workers that die while starting, every time --------------------------------------
@pytest.mark.parametrize("initializer", [fw.exit_at_once, fw.kill_myself])
def test_initializer_that_ends_the_worker_breaks_the_pool(ctx, initializer):
    with ctx.Pool(2, initializer=initializer) as pool:
        pending = pool.apply_async(fw.square, (2,))
        with pytest.raises(InitializerError, match="initializer") as caught:
            pending.get(timeout=30)
        assert "in a row" in str(caught.value)
        with pytest.raises(InitializerError):
            pool.apply(fw.square, (3,))  # new work fails at once, too
        with pytest.raises(InitializerError):
            list(pool.imap(fw.square, range(5)))
        restarts = pool.statistics().restarts
        assert restarts <= 4  # it stopped starting workers


@pytest.mark.parametrize("method", ["spawn", "forkserver"])  # a forked child imports nothing
def test_initializer_that_does_not_import_in_the_child(method, tmp_path, monkeypatch):
    """An initializer the child cannot import (its module exists only in the parent)."""
    ctx = polyproc.get_context(method)
    module = types.ModuleType("polyproc_fault_parent_only")
    exec("def init():\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with ctx.Pool(2, initializer=module.init) as pool:
        with pytest.raises(ProcessError, match="in a row") as caught:
            pool.apply(fw.square, (2,))
        assert isinstance(caught.value.__cause__, ImportError)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_script_without_main_guard_fails_instead_of_spinning(method, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        import polyproc
        from tests._fault_workers import square
        pool = polyproc.get_context({method!r}).Pool(2)
        print(pool.map(square, range(10)))
    """))
    env = dict(os.environ, PYTHONPATH=str(_REPO))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=50, env=env, cwd=tmp_path)
    assert done.returncode != 0
    assert "ProcessError" in done.stderr and "in a row" in done.stderr
    assert "__main__" in done.stderr
    assert "RuntimeError" in done.stderr  # the child's own error, as the cause


def test_workers_killed_while_others_run_do_not_break_the_pool(ctx):
    """Start-up deaths break the pool only when no worker gets going: a pool whose
    workers run tasks keeps going when some are lost."""
    with ctx.Pool(2, maxtasksperchild=1) as pool:
        assert pool.map(fw.square, range(20), chunksize=1) == [x * x for x in range(20)]


# -- 4. imap reads a bounded window ahead ------------------------------------------------
class _Counted:
    """An endless input that counts the items pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for n in itertools.count():
            self.pulled += 1
            yield n


@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
@pytest.mark.parametrize("buffersize", [None, 8])
def test_imap_reads_a_bounded_window_of_an_endless_input(ctx, method, buffersize):
    from polyproc._pool._local._dispatch import MAX_TASKS_PER_BATCH
    from polyproc._pool._pool import READ_AHEAD_BATCHES_PER_WORKER

    window = buffersize or 2 * READ_AHEAD_BATCHES_PER_WORKER * MAX_TASKS_PER_BATCH
    source = _Counted()
    widest = 0
    with ctx.Pool(2) as pool:
        results = getattr(pool, method)(fw.square, source, buffersize=buffersize)
        for taken, _value in enumerate(results, start=1):
            widest = max(widest, source.pulled - taken)
            if taken == 3000:
                break
        assert widest <= window, (widest, window)


def test_imap_rest_of_input_is_read_after_close(ctx):
    """After close(), join() waits for the whole input: it is read regardless of the
    reader (as in multiprocessing, where imap reads its input eagerly)."""
    pool = ctx.Pool(2)
    results = pool.imap(fw.square, range(5000), buffersize=4)
    pool.close()
    pool.join()
    assert list(results) == [x * x for x in range(5000)]


def test_imap_rejects_a_bad_buffersize(ctx):
    with ctx.Pool(1) as pool, pytest.raises(ValueError, match="buffersize"):
        pool.imap(fw.square, range(3), buffersize=0)


def test_executor_map_buffersize(ctx):
    source = _Counted()
    widest = 0
    from polyproc._pool._executor import PoolExecutor

    with PoolExecutor(2, mp_context=ctx) as executor:
        for taken, value in enumerate(executor.map(fw.square, source, buffersize=5), 1):
            assert value == (taken - 1) ** 2
            widest = max(widest, source.pulled - taken)
            if taken == 200:
                break
    assert widest <= 5
