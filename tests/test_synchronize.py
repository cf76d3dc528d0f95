"""Locks, semaphores, conditions, events and barriers across processes."""

from __future__ import annotations

import pickle
import threading
import time
import warnings

import pytest

import polyproc
from polyproc.exceptions import AbandonedLockWarning
from tests import _workers
from tests._support import SHORT_TIMEOUT


def test_lock_basics():
    """acquire/release, non-blocking and timed acquire, and an unheld release."""
    lock = polyproc.Lock()
    assert lock.acquire()
    assert not lock.acquire(False)
    started = time.monotonic()
    assert not lock.acquire(timeout=0.1)
    assert 0.1 <= time.monotonic() - started < 0.15  # honoured within 50 ms
    lock.release()
    with pytest.raises(ValueError):
        lock.release()
    with lock:
        assert "MainProcess" in repr(lock)
    assert "None" in repr(lock)


def test_rlock_is_recursive_and_owned():
    """An RLock nests in its owner thread and refuses release by another thread."""
    rlock = polyproc.RLock()
    with rlock, rlock:
        assert rlock._count() == 2
        errors: list = []

        def other():
            try:
                rlock.release()
            except AssertionError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(SHORT_TIMEOUT)
        assert len(errors) == 1
    with pytest.raises(AssertionError):
        rlock.release()


def test_semaphores():
    """Semaphore counts; BoundedSemaphore refuses a release past its value."""
    sem = polyproc.Semaphore(2)
    assert sem.acquire() and sem.acquire() and not sem.acquire(False)
    assert 0 == sem.get_value()
    sem.release()
    sem.release()
    sem.release()
    assert 3 == sem.get_value()
    bounded = polyproc.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bounded.release()
    with pytest.raises(ValueError):
        polyproc.Semaphore(-1)


def test_seed_lock_example_serialises_prints(ctx, capfd):
    """The seed: ten processes print 'hello world i' under one lock."""
    lock = ctx.Lock()
    procs = [ctx.Process(target=_workers.print_under_lock, args=(lock, i)) for i in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(SHORT_TIMEOUT)
        assert 0 == p.exitcode
    if ctx.get_start_method() != "forkserver":  # its children print to the server's stdout
        lines = sorted(capfd.readouterr().out.splitlines())
        assert sorted(f"hello world {i}" for i in range(10)) == lines


def test_lock_counts_exactly_across_processes(ctx):
    """Two processes incrementing a Value 2,000 times each under its lock lose nothing."""
    value = ctx.Value("i", 0)
    procs = [ctx.Process(target=_workers.increment_many, args=(value, 2000)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(SHORT_TIMEOUT)
    assert 4000 == value.value


def test_lock_of_a_killed_holder_is_taken_over(ctx):
    """A process killed while holding a Lock: the next acquire succeeds, with a warning."""
    lock = ctx.Lock()
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.hold_lock_then_block, args=(lock, writer))
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and "holding" == reader.recv()
    assert not lock.acquire(False)
    p.kill()
    p.join(SHORT_TIMEOUT)
    with pytest.warns(AbandonedLockWarning, match=str(p.pid)):
        assert lock.acquire(timeout=SHORT_TIMEOUT)
    lock.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lock.acquire(timeout=1)  # an ordinary acquire again: no warning
    lock.release()


def test_abandoned_lock_can_be_made_an_error(ctx):
    """With the warning turned into an error, the acquire raises and leaves the lock free."""
    lock = ctx.RLock()
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.hold_lock_then_block, args=(lock, writer))
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv()
    p.kill()
    p.join(SHORT_TIMEOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AbandonedLockWarning)
        with pytest.raises(AbandonedLockWarning):
            lock.acquire(timeout=SHORT_TIMEOUT)
    assert lock.acquire(False)
    lock.release()


def test_condition_notify_across_processes(ctx):
    """A child waiting on a Condition wakes on notify; wait() without the lock raises."""
    cond = ctx.Condition()
    ready = ctx.Semaphore(0)
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.wait_on_condition, args=(cond, ready, writer))
    p.start()
    assert ready.acquire(timeout=SHORT_TIMEOUT)
    with cond:  # the child is now inside wait(), having released the lock
        cond.notify()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv() is True
    p.join(SHORT_TIMEOUT)
    with pytest.raises(AssertionError):
        cond.wait(0)
    with cond:
        started = time.monotonic()
        assert cond.wait(0.1) is False
        assert time.monotonic() - started < 0.15
        assert cond.wait_for(lambda: 42, 0) == 42


def test_event_across_processes(ctx):
    """Setting an Event wakes a waiting child; clear() resets it."""
    event = ctx.Event()
    assert not event.is_set()
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.wait_for_event, args=(event, writer))
    p.start()
    event.set()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv() is True
    p.join(SHORT_TIMEOUT)
    assert event.is_set()
    event.clear()
    started = time.monotonic()
    assert event.wait(0.1) is False
    assert time.monotonic() - started < 0.15


def test_barrier_across_processes(ctx):
    """Three parties (two children and us) cross together with distinct indices."""
    barrier = ctx.Barrier(3)
    reader, writer = ctx.Pipe(duplex=False)
    procs = [ctx.Process(target=_workers.cross_barrier, args=(barrier, writer)) for _ in range(2)]
    for p in procs:
        p.start()
    mine = barrier.wait(SHORT_TIMEOUT)
    indices = {mine}
    for _ in procs:
        assert reader.poll(SHORT_TIMEOUT)
        indices.add(reader.recv())
    for p in procs:
        p.join(SHORT_TIMEOUT)
    assert {0, 1, 2} == indices
    assert 3 == barrier.parties and 0 == barrier.n_waiting


def test_barrier_timeout_and_abort():
    """A wait that times out breaks the barrier within 50 ms; abort and reset behave."""
    barrier = polyproc.Barrier(2)
    started = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.1)
    assert time.monotonic() - started < 0.15
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken
    barrier.abort()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(1)


def test_primitives_can_be_sent_after_start(ctx):
    """Unlike multiprocessing, a Lock can travel over a Pipe to a running process."""
    lock = ctx.Lock()
    copy = pickle.loads(_dumps(lock))
    assert copy.acquire(False)
    assert not lock.acquire(False)
    copy.release()


def _dumps(obj):
    from polyproc._wire._pickling import dumps

    return dumps(obj)


def test_lock_dropped_by_the_parent_stays_valid_in_the_child(ctx):
    """The parent drops its lock while a child still uses it, then allocates many new
    shared objects: the lock's memory must not be recycled into them under the child."""
    lock = ctx.Lock()
    go_recv, go_send = ctx.Pipe(duplex=False)
    result_recv, result_send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_workers.hammer_lock_on_signal,
                        args=(lock, go_recv, result_send))
    child.start()
    del lock
    import gc

    gc.collect()
    fresh = [ctx.Semaphore(0) for _ in range(200)]  # would reuse the freed slot
    go_send.send(True)
    assert result_recv.poll(SHORT_TIMEOUT)
    assert result_recv.recv() is True
    child.join(SHORT_TIMEOUT)
    assert 0 == child.exitcode
    assert all(s.get_value() == 0 for s in fresh)  # and the child left them untouched
