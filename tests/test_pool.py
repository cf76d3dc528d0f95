"""Pool: the documented API under every start method, and the never-hang guarantees."""

from __future__ import annotations

import itertools
import threading

import pytest

import polyproc
from polyproc.exceptions import (
    InitializerError,
    ProcessError,
    RemoteTraceback,
    SerializationError,
    WorkerLostError,
)
from polyproc.pool import ThreadPool
from tests import _workers
from tests._support import SHORT_TIMEOUT, wait_until


@pytest.fixture
def pool(ctx):
    """A two-worker pool of each start method, always terminated."""
    p = ctx.Pool(2)
    try:
        yield p
    finally:
        p.terminate()
        p.join(SHORT_TIMEOUT)


def test_seed_examples(ctx):
    """Pool(5).map(f, [1, 2, 3]) is [1, 4, 9]; apply_async results come back by get."""
    with ctx.Pool(5) as p:
        assert [1, 4, 9] == p.map(_workers.square, [1, 2, 3])
        results = [p.apply_async(_workers.square, [i]) for i in range(10)]
        assert [i * i for i in range(10)] == [r.get(timeout=10) for r in results]


def test_the_api(pool):
    """apply, starmap, imap, imap_unordered, map_async and their results."""
    assert 49 == pool.apply(_workers.square, (7,))
    assert [8, 9] == pool.starmap(pow, [(2, 3), (3, 2)])
    assert [0, 1, 4, 9] == list(pool.imap(_workers.square, range(4)))
    assert [0, 1, 4, 9] == sorted(pool.imap_unordered(_workers.square, range(4), chunksize=3))
    result = pool.map_async(_workers.square, range(100), chunksize=7)
    assert [i * i for i in range(100)] == result.get(SHORT_TIMEOUT)
    assert result.ready() and result.successful()
    assert [] == pool.map(_workers.square, [])


def test_lambdas_and_closures(pool):
    """Functions that cannot be pickled by reference work under every start method."""
    offset = 10
    assert [11, 12] == pool.map(lambda x: x + offset, [1, 2])


def test_exception_carries_the_worker_traceback(pool):
    """A task's exception is re-raised by get() with the remote traceback as its cause."""
    result = pool.apply_async(_workers.fail_with, ("boom",))
    with pytest.raises(ValueError, match="boom") as info:
        result.get(SHORT_TIMEOUT)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_with" in str(info.value.__cause__)
    assert not result.successful()
    with pytest.raises(ValueError, match="boom"):
        pool.map(_workers.fail_with, ["boom"])


def test_killed_worker_fails_only_its_task(pool):
    """SIGKILL of a worker: its task fails with WorkerLostError naming it; the pool heals."""
    lost = pool.apply_async(_workers.kill_myself, ("the doomed task",))
    with pytest.raises(WorkerLostError, match=r"kill_myself\('the doomed task',\).*SIGKILL"):
        lost.get(SHORT_TIMEOUT)
    assert [i * i for i in range(20)] == pool.map(_workers.square, range(20))


@pytest.mark.parametrize(
    ("func", "arg", "cause"),
    [
        (_workers.segfault, None, "SIGSEGV"),
        (_workers.exit_abruptly, 3, "exit code 3"),
    ],
    ids=["segfault", "os._exit"],
)
def test_crashing_worker_fails_only_its_task(pool, func, arg, cause):
    """A segfault or os._exit in a task: WorkerLostError saying how; the pool goes on."""
    with pytest.raises(WorkerLostError, match=cause):
        pool.apply_async(func, (arg,)).get(SHORT_TIMEOUT)
    assert [1, 4] == pool.map(_workers.square, [1, 2])


def test_task_timeout_kills_only_the_stuck_worker(pool):
    """A task past its task_timeout fails with TimeoutError; the others still finish."""
    stuck = pool.apply_async(_workers.block_forever, (None,), task_timeout=0.2)
    others = [pool.apply_async(_workers.square, (i,)) for i in range(5)]
    with pytest.raises(TimeoutError, match="task_timeout"):
        stuck.get(SHORT_TIMEOUT)
    assert [i * i for i in range(5)] == [r.get(SHORT_TIMEOUT) for r in others]
    with pytest.raises(ValueError):
        pool.apply_async(_workers.square, (1,), task_timeout=0)


def test_get_timeout_raises_the_builtin_timeout_error(pool):
    """AsyncResult.get(timeout) raises polyproc.TimeoutError, also the builtin one."""
    result = pool.apply_async(_workers.block_forever, (None,), task_timeout=5)
    with pytest.raises(TimeoutError):
        result.get(0.05)
    with pytest.raises(polyproc.TimeoutError):
        result.get(0.05)


def test_failing_initializer_is_an_error_not_a_hang(ctx):
    """An initializer that raises fails the tasks with InitializerError."""
    p = ctx.Pool(2, initializer=_workers.failing_initializer)
    try:
        with pytest.raises(InitializerError) as info:
            p.apply_async(_workers.square, (1,)).get(SHORT_TIMEOUT)
        assert "cannot initialise" in str(info.value.__cause__)
    finally:
        p.terminate()
        p.join(SHORT_TIMEOUT)


def test_maxtasksperchild_replaces_workers(ctx):
    """With maxtasksperchild=1 every task runs in a new worker."""
    with ctx.Pool(1, maxtasksperchild=1) as p:
        pids = [p.apply_async(_workers.my_pid).get(SHORT_TIMEOUT) for _ in range(3)]
    assert 3 == len(set(pids))


def test_unpicklable_argument_raises_at_the_call(pool):
    """apply_async and map name the object that cannot be pickled, at the call."""
    with pytest.raises(SerializationError, match=r"Pool\.apply_async.*_thread\.lock"):
        pool.apply_async(_workers.square, (threading.Lock(),))
    with pytest.raises(SerializationError, match=r"Pool\.map"):
        pool.map(_workers.square, [1, threading.Lock()])


def test_imap_consumes_its_input_lazily(pool):
    """imap over an endless generator: only what the workers can take is read ahead."""
    results = pool.imap(_workers.square, itertools.count())
    assert [0, 1, 4, 9, 16] == [results.next(SHORT_TIMEOUT) for _ in range(5)]


def test_imap_input_that_raises(pool):
    """An exception from the input iterable surfaces from the iterator, not a hang."""

    def items():
        yield 1
        raise KeyError("bad input")

    results = pool.imap(_workers.square, items())
    assert 1 == results.next(SHORT_TIMEOUT)
    with pytest.raises(KeyError):
        results.next(SHORT_TIMEOUT)


def test_close_join_and_misuse(ctx):
    """close then join finishes queued work; a closed pool refuses new work."""
    p = ctx.Pool(2)
    result = p.map_async(_workers.square, range(10))
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    p.join(SHORT_TIMEOUT)
    assert [i * i for i in range(10)] == result.get(0)
    with pytest.raises(ValueError, match="not running"):
        p.apply_async(_workers.square, (1,))
    with pytest.raises(ValueError):
        ctx.Pool(0)
    with pytest.raises(TypeError):
        ctx.Pool(1, initializer=3)


def test_terminate_fails_what_is_pending(ctx):
    """terminate() resolves every pending result with an error instead of leaving it hanging."""
    p = ctx.Pool(1)
    blocked = p.apply_async(_workers.block_forever, (None,))
    queued = p.apply_async(_workers.square, (3,))
    p.terminate()
    p.join(SHORT_TIMEOUT)
    for result in (blocked, queued):
        with pytest.raises(ProcessError, match="terminated"):
            result.get(SHORT_TIMEOUT)


def test_thread_pool():
    """ThreadPool: the same API with threads; unpicklable arguments are fine there."""
    lock = threading.Lock()
    with ThreadPool(3) as p:
        assert [0, 1, 4] == p.map(_workers.square, range(3))
        assert p.apply(lambda held: held.acquire(False), (lock,)) is True
        assert [1, 4] == list(p.imap(_workers.square, [1, 2]))
        with pytest.raises(ValueError):
            p.apply_async(_workers.square, (1,), task_timeout=1)


def test_large_exceptions_arrive_whole(pool):
    """A 1 MB exception message comes back as itself, not truncated into a RemoteError."""
    with pytest.raises(ValueError) as info:
        pool.apply(_workers.fail_with, ("x" * 1_000_000,))
    assert 1_000_000 == len(str(info.value))


class _RefusesPickling:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_an_objects_own_pickling_error_keeps_its_type(pool):
    """An exception raised by an object's __reduce__ keeps its type, with a note naming it."""
    with pytest.raises(RuntimeError, match="cannot pickle this") as info:
        pool.map(_workers.square, [_RefusesPickling()])
    assert any("Pool.map" in note for note in info.value.__notes__)


def test_big_tasks_wait_for_an_idle_worker(pool):
    """Tasks too big to prefetch behind a busy worker still all complete (no busy loop)."""
    blob = b"x" * 200_000
    results = [pool.apply_async(len, (blob,)) for _ in range(6)]
    assert [200_000] * 6 == [r.get(SHORT_TIMEOUT) for r in results]


def test_death_with_tasks_queued_behind_it(pool):
    """A worker dies while tasks wait: they go to the other and its replacement.

    Regression: the manager used to retry sending to the dying worker in a busy loop and
    never noticed the death.
    """
    for _ in range(5):
        results = [
            pool.apply_async(_workers.kill_myself if i == 3 else _workers.square, (i,))
            for i in range(8)
        ]
        for i, result in enumerate(results):
            if i == 3:
                with pytest.raises(WorkerLostError):
                    result.get(SHORT_TIMEOUT)
            else:
                assert i * i == result.get(SHORT_TIMEOUT)


def test_statistics(ctx):
    """statistics(): calls done and failed, restarts with their causes, per-worker time."""
    with ctx.Pool(2, maxtasksperchild=3) as p:
        assert [i * i for i in range(10)] == p.map(_workers.square, range(10), chunksize=1)
        with pytest.raises(ValueError):
            p.apply(_workers.fail_with, ("x",))
        with pytest.raises(WorkerLostError):
            p.apply(_workers.kill_myself, (None,))
        with pytest.raises(TimeoutError):
            p.apply(_workers.block_forever, (None,), task_timeout=0.1)
        # Replacements start just after the failures are delivered: wait for them.
        assert wait_until(lambda: p.statistics().workers == 2)
        stats = p.statistics()
    assert 10 == stats.tasks_done
    assert 3 == stats.tasks_failed
    assert stats.restart_causes.get("SIGKILL", 0) >= 1
    assert stats.restart_causes.get("task_timeout", 0) == 1
    assert stats.restart_causes.get("maxtasksperchild", 0) >= 1
    assert stats.restarts == sum(stats.restart_causes.values())
    assert 2 == stats.workers == len(stats.per_worker)
    assert all(w.busy_seconds >= 0 and w.idle_seconds >= 0 for w in stats.per_worker)


def test_thread_pool_statistics():
    """A ThreadPool counts its calls too."""
    with ThreadPool(2) as p:
        p.map(_workers.square, range(5))
        assert 5 == p.statistics().tasks_done


class _RecordingBar:
    """A tqdm-compatible bar that records what it was told."""

    def __init__(self):
        self.total = None
        self.n = 0
        self.closed = False

    def update(self, n):
        self.n += n

    def close(self):
        self.closed = True


@pytest.mark.parametrize("method", ["map", "imap", "imap_unordered"])
def test_progress_object_is_fed_and_closed(pool, method):
    """progress=<tqdm-like>: updated per chunk, total set, closed when all is done."""
    bar = _RecordingBar()
    results = getattr(pool, method)(_workers.square, range(50), chunksize=7, progress=bar)
    assert sorted(i * i for i in range(50)) == sorted(results)
    assert wait_until(lambda: bar.closed)
    assert 50 == bar.n == bar.total


def test_progress_true_draws_a_bar(pool, capsys):
    """progress=True draws a bar on stderr (tqdm's if installed, else ours) reaching 3/3."""
    assert [0, 1, 4] == pool.map(_workers.square, range(3), progress=True)
    seen: list[str] = []
    # The bar is closed by the manager thread just after the results are delivered.
    assert wait_until(lambda: seen.append(capsys.readouterr().err) or "3/3" in "".join(seen))


def test_progress_rejects_nonsense(pool):
    """A progress value that is neither a bool nor a bar is a TypeError at the call."""
    with pytest.raises(TypeError, match="progress"):
        pool.map(_workers.square, range(3), progress="yes")


def test_text_bar_shows_count_rate_and_eta():
    """The built-in bar: filled bar, count of total, rate and time left."""
    import io

    from polyproc._pool._progress import TextBar

    stream = io.StringIO()
    bar = TextBar(4, stream, "work")
    bar.update(2)
    bar.update(2)
    bar.close()
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("work: [" + "#" * 30 + "] 4/4")
    assert "/s" in last and "ETA 0s" in last


def test_tasks_spread_over_the_workers(ctx):
    """Two tasks that must run at once (a 2-party barrier) do: prefetching never stacks
    them on one worker while the other idles."""
    barrier = ctx.Barrier(2)
    with ctx.Pool(2) as p:
        assert [0, 1] == sorted(p.map(_workers.meet_at_barrier, [barrier, barrier], chunksize=1))
