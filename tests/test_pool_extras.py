"""Pool extensions: retries, the memory cap, forwarded logs, large buffers in shared
memory, and the batching of tiny tasks surviving a worker's death."""

from __future__ import annotations

import logging
import os

import pytest

from polyproc.exceptions import SerializationError, WorkerLostError
from tests import _workers
from tests._support import SHORT_TIMEOUT

numpy = pytest.importorskip("numpy")


def _make_pool(ctx, *args, **kwargs):
    return ctx.Pool(*args, **kwargs)


# -- retries -------------------------------------------------------------------------------


def test_retry_after_a_worker_is_killed(ctx):
    """A task whose worker is SIGKILLed runs again on a new worker and succeeds."""
    counter = ctx.Value("i", 0)
    with ctx.Pool(2, retries=1) as p:
        result = p.apply_async(_workers.crash_on_first_attempt, (counter, 4))
        assert result.get(SHORT_TIMEOUT) == 40
        assert counter.value == 2
        assert p.statistics().restart_causes.get("SIGKILL") == 1


def test_retry_after_a_timeout(ctx):
    """A task that times out is killed and run again, within task_timeout each time."""
    counter = ctx.Value("i", 0)
    with ctx.Pool(1, retries=2, task_timeout=1.0) as p:
        assert p.apply(_workers.block_on_first_attempt, (counter,)) == "done"
        assert counter.value == 2


def test_retry_on_a_chosen_exception(ctx):
    """retry_on names which exceptions are retried; others are not."""
    counter = ctx.Value("i", 0)
    with ctx.Pool(1, retries=3, retry_on=(_workers.FlakyError,)) as p:
        assert p.apply(_workers.fail_until_attempt, (counter, 3)) == 3
    counter.value = 0
    with ctx.Pool(1, retries=3) as p:  # by default only lost workers and timeouts
        with pytest.raises(_workers.FlakyError):
            p.apply(_workers.fail_until_attempt, (counter, 3))
        assert counter.value == 1


def test_retries_run_out(ctx):
    """After the last retry the task fails with its own error, noting the attempts."""
    counter = ctx.Value("i", 0)
    with (
        ctx.Pool(1, retries=2, retry_on=(_workers.FlakyError,)) as p,
        pytest.raises(_workers.FlakyError) as caught,
    ):
        p.apply(_workers.fail_until_attempt, (counter, 10))
    assert counter.value == 3
    assert any("3 times" in note for note in caught.value.__notes__)


def test_retry_arguments_are_checked():
    import polyproc

    with pytest.raises(ValueError, match="retries"):
        polyproc.Pool(1, retries=-1)
    with pytest.raises(TypeError, match="retry_on"):
        polyproc.Pool(1, retry_on=("ValueError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_worker_memory"):
        polyproc.Pool(1, max_worker_memory=0)


# -- the memory cap ----------------------------------------------------------------------


def test_worker_over_its_memory_cap_is_replaced(ctx):
    """A worker whose resident memory passes max_worker_memory leaves after its task;
    the pool replaces it and every result still comes back."""
    with ctx.Pool(1, max_worker_memory=150 << 20) as p:
        first = p.apply(_workers.hoard_memory, (200,))
        second = p.apply(_workers.hoard_memory, (1,))
        assert first != second  # the hoarder was replaced
        stats = p.statistics()
        assert stats.restart_causes.get("max_worker_memory") == 1
        assert p.map(_workers.square, range(10)) == [i * i for i in range(10)]


# -- forwarded logs ----------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_worker_logs_reach_the_parent_handlers(ctx):
    """forward_logs=True: a worker's record reaches the parent's handler, formatted, with
    the worker's pid."""
    handler = _Collect()
    logger = logging.getLogger("tests.pool")
    logger.addHandler(handler)
    try:
        with ctx.Pool(1, forward_logs=True) as p:
            pid = p.apply(_workers.log_a_warning, ("hello",))
            p.close()
            p.join(SHORT_TIMEOUT)  # records sent before the result are handled before it
        messages = [(r.getMessage(), r.process, r.levelno) for r in handler.records]
        assert ("from worker: hello", pid, logging.WARNING) in messages
    finally:
        logger.removeHandler(handler)


def test_worker_logs_stay_in_the_worker_by_default(ctx):
    handler = _Collect()
    logger = logging.getLogger("tests.pool")
    logger.addHandler(handler)
    try:
        with ctx.Pool(1) as p:
            p.apply(_workers.log_a_warning, ("quiet",))
        assert not [r for r in handler.records if r.process != os.getpid()]
    finally:
        logger.removeHandler(handler)


# -- large buffers -----------------------------------------------------------------------


def test_large_arrays_travel_in_shared_memory_both_ways(ctx):
    """Arrays above the threshold arrive mapped from shared memory, in and out, intact."""
    arrays = [numpy.arange(200_000, dtype=numpy.float64) * i for i in range(4)]
    with ctx.Pool(2) as p:
        checks = p.map(_workers.array_checksum, arrays, chunksize=1)
        assert [c[0] for c in checks] == [float(a.sum()) for a in arrays]
        assert all(in_shared_memory for _, in_shared_memory in checks)
        out = p.map(_workers.make_array, [300_000, 10])
    assert numpy.array_equal(out[0], numpy.arange(300_000, dtype=numpy.float64))
    assert _workers.array_checksum(out[0])[1]  # mapped, not copied through the socket
    assert not _workers.array_checksum(out[1])[1]  # small: in band
    out[0][0] = 42.0  # the received array is an ordinary writable array
    assert out[0][0] == 42.0


def test_large_bytes_round_trip(ctx):
    """Big bytes (which pickle keeps in band) travel out of band and come back as bytes."""
    data = _workers.bytes_of(1 << 20)
    with ctx.Pool(1) as p:
        assert p.apply(_workers.bytes_of, (1 << 20,)) == data
        assert p.apply(len, (data,)) == len(data)
        assert p.map(len, [data, b"small"]) == [len(data), 5]


# -- tiny tasks, batched, when a worker dies ---------------------------------------------


def test_killed_worker_in_a_stream_of_tiny_tasks(ctx):
    """imap with chunksize 1 batches tiny tasks; a worker killed by one item fails that
    item only, and every other item comes back exactly once."""
    import functools

    kill_at = functools.partial(_workers.kill_myself_at, 700)
    with ctx.Pool(2) as p:
        results = []
        it = p.imap(kill_at, range(2000))
        for x in range(2000):
            try:
                results.append(it.next(SHORT_TIMEOUT))
            except WorkerLostError as exc:
                assert "item 700 " in str(exc)
                assert x == 700
                results.append(None)
        assert results == [None if x == 700 else x + 1 for x in range(2000)]
        assert p.statistics().restart_causes == {"SIGKILL": 1}


def test_unpicklable_result_in_a_stream_of_tiny_tasks(ctx):
    """One result that cannot be pickled fails its own item only."""
    import functools

    odd_one = functools.partial(_workers.unpicklable_at, 123)
    with ctx.Pool(2) as p:
        outcomes = []
        it = p.imap_unordered(odd_one, range(500))
        while True:
            try:
                outcomes.append(it.next(SHORT_TIMEOUT))
            except StopIteration:
                break
            except SerializationError as exc:
                outcomes.append(exc)
    errors = [o for o in outcomes if isinstance(o, SerializationError)]
    assert len(errors) == 1 and "lock" in str(errors[0])
    assert sorted(o for o in outcomes if not isinstance(o, SerializationError)) == [
        x for x in range(500) if x != 123
    ]


def test_imap_does_not_read_ahead_of_a_slow_reader(ctx):
    """Results the caller has not read yet hold the input back: the gap between items
    read from the input and results taken stays bounded (the parent's memory with it)."""
    from polyproc.pool import IMapIterator

    read = 0

    def numbers():
        nonlocal read
        for n in range(200_000):
            read += 1
            yield n

    widest = 0
    with ctx.Pool(2) as p:
        for taken, value in enumerate(p.imap(_workers.square, numbers()), start=1):
            assert value == (taken - 1) ** 2
            widest = max(widest, read - taken)
            sum(range(600))  # a reader slower than the workers
    assert widest < IMapIterator.UNREAD_HIGH + 20_000
