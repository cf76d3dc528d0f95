"""Queue, JoinableQueue and SimpleQueue: the documented behaviour and the traps fixed."""

from __future__ import annotations

import queue
import threading
import time

import pytest

import polyproc
from polyproc.exceptions import SerializationError
from tests import _workers
from tests._support import SHORT_TIMEOUT


def test_seed_queue_example(ctx):
    """The seed: ten children each put [n, 'hello']; the parent gets all ten."""
    q = ctx.Queue()
    procs = [ctx.Process(target=_workers.put_n_hello, args=(q, i)) for i in range(10)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=SHORT_TIMEOUT)[0] for _ in range(10))
    for p in procs:
        p.join(SHORT_TIMEOUT)
    assert list(range(10)) == got


def test_fifo_and_sizes():
    """Items come out in order; qsize, empty and full tell the truth."""
    q = polyproc.Queue(3)
    assert q.empty() and not q.full() and 0 == q.qsize()
    for item in ("a", ["b"], {"c": 3}):
        q.put(item)
    assert q.full() and 3 == q.qsize()
    assert ["a", ["b"], {"c": 3}] == [q.get(), q.get(), q.get()]


def test_full_and_empty_honour_timeouts():
    """A full put and an empty get raise queue.Full/Empty after their timeout (±50 ms)."""
    q = polyproc.Queue(1)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.1)
    assert 0.1 <= time.monotonic() - started < 0.15
    assert 1 == q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    assert 0.1 <= time.monotonic() - started < 0.15
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_put_of_unpicklable_raises_at_the_call():
    """The stdlib drops such an item in its feeder thread; polyproc raises in put()."""
    q = polyproc.Queue()
    with pytest.raises(SerializationError, match=r"Queue\.put.*_thread\.lock"):
        q.put(("fine", threading.Lock()))
    assert q.empty()
    q.put("next")
    assert "next" == q.get(timeout=SHORT_TIMEOUT)


def test_closed_queue_raises_value_error():
    """After close(), put and get raise ValueError at once."""
    q = polyproc.Queue()
    q.put(1)
    q.close()
    with pytest.raises(ValueError, match="closed"):
        q.put(2)
    with pytest.raises(ValueError, match="closed"):
        q.get()
    q.join_thread()
    q.cancel_join_thread()


def test_child_that_exits_right_after_put_loses_nothing_and_join_does_not_deadlock(ctx):
    """Both documented stdlib traps: 20 MB put by a child that exits at once, joined first."""
    q = ctx.Queue()
    p = ctx.Process(target=_workers.put_many_and_exit, args=(q, 200, 100_000))
    p.start()
    p.join(SHORT_TIMEOUT)  # before draining: the stdlib deadlocks here
    assert 0 == p.exitcode
    items = [q.get(timeout=SHORT_TIMEOUT) for _ in range(200)]
    assert list(range(200)) == [i for i, _ in items]
    assert all(len(data) == 100_000 for _, data in items)
    assert q.empty()


def test_consumer_killed_while_blocked_does_not_wedge_the_queue(ctx):
    """A consumer SIGKILLed inside get(): other consumers still receive what is put."""
    q = ctx.Queue()
    out = ctx.Queue()
    reader, writer = ctx.Pipe(duplex=False)
    victim = ctx.Process(target=_workers.get_forever, args=(q, writer))
    victim.start()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv() == "waiting"
    victim.kill()
    victim.join(SHORT_TIMEOUT)
    survivor = ctx.Process(target=_workers.get_one_into, args=(q, out))
    survivor.start()
    q.put("for the survivor")
    assert "for the survivor" == out.get(timeout=SHORT_TIMEOUT)
    survivor.join(SHORT_TIMEOUT)


def test_large_bytes_and_buffers_round_trip(ctx):
    """Large bytes skip pickling; other large objects are pickled; both arrive intact."""
    np = pytest.importorskip("numpy")
    q = ctx.Queue()
    blob = bytes(range(256)) * 8192  # 2 MiB
    array = np.arange(500_000, dtype=np.float64)
    q.put(blob)
    q.put(array)
    q.put(bytearray(b"ba") * 50_000)
    assert blob == q.get(timeout=SHORT_TIMEOUT)
    assert np.array_equal(array, q.get(timeout=SHORT_TIMEOUT))
    assert bytearray(b"ba") * 50_000 == q.get(timeout=SHORT_TIMEOUT)


def test_queue_can_be_sent_to_a_running_process(ctx):
    """A queue travels inside another queue to a running child (multiprocessing refuses)."""
    inbox = ctx.Queue()
    p = ctx.Process(target=_workers.reply_through_sent_queue, args=(inbox,))
    p.start()
    private = ctx.Queue()
    inbox.put(private)
    assert "through a queue that travelled" == private.get(timeout=SHORT_TIMEOUT)
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


def test_joinable_queue(ctx):
    """join() returns once every item is marked done; too many task_done raise."""
    q = ctx.JoinableQueue()
    for i in range(5):
        q.put(i)
    assert q.join(timeout=0.05) is False
    p = ctx.Process(target=_workers.consume_and_mark_done, args=(q, 5))
    p.start()
    assert q.join(timeout=SHORT_TIMEOUT) is True
    p.join(SHORT_TIMEOUT)
    with pytest.raises(ValueError):
        q.task_done()


def test_simple_queue(ctx):
    """SimpleQueue: put, get, empty, close."""
    q = ctx.SimpleQueue()
    assert q.empty()
    p = ctx.Process(target=_workers.put_n_hello, args=(q, 7))
    p.start()
    assert [7, "hello"] == q.get()
    p.join(SHORT_TIMEOUT)
    q.close()
    with pytest.raises(ValueError):
        q.put(1)


def test_many_producers_and_consumers(ctx):
    """Two producers and two consumers move 20,000 items with nothing lost or doubled."""
    q = ctx.Queue(100)
    out = ctx.Queue()
    producers = [
        ctx.Process(target=_workers.put_range, args=(q, start, 10_000)) for start in (0, 10_000)
    ]
    consumers = [ctx.Process(target=_workers.sum_items, args=(q, 10_000, out)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    total = out.get(timeout=SHORT_TIMEOUT) + out.get(timeout=SHORT_TIMEOUT)
    for p in producers + consumers:
        p.join(SHORT_TIMEOUT)
    assert sum(range(20_000)) == total


# -- the shape code written for multiprocessing.queues reaches for ----------------------


def test_reader_end_is_ready_for_wait_exactly_while_an_item_waits(ctx):
    """``queue._reader`` works with ``connection.wait`` as multiprocessing's pipe end does:
    not ready while empty, ready once a child puts, ``recv`` takes the item, not ready
    again after; items put before anyone waited count too."""
    for kind in (ctx.SimpleQueue, ctx.Queue):
        q = kind()
        q.put("early")  # before the doorbell is armed
        reader = q._reader
        assert [reader] == polyproc.connection.wait([reader], timeout=SHORT_TIMEOUT)
        assert "early" == reader.recv()
        assert [] == polyproc.connection.wait([reader], timeout=0.05)
        assert not reader.poll()
        child = ctx.Process(target=_workers.put_n_hello, args=(q, 7))
        child.start()
        assert [reader] == polyproc.connection.wait([reader], timeout=SHORT_TIMEOUT)
        assert [7, "hello"] == reader.recv()
        child.join(SHORT_TIMEOUT)
        assert [] == polyproc.connection.wait([reader], timeout=0.05)
        reader.close()
        with pytest.raises(OSError):
            reader.recv()


def test_writer_end_sends_into_the_queue():
    """``queue._writer.send`` puts into the queue."""
    q = polyproc.SimpleQueue()
    q._writer.send({"a": 1})
    assert {"a": 1} == q.get()


def test_queue_takes_a_context_and_a_subclass_may_handle_pickling_errors_itself():
    """``Queue(maxsize, ctx=...)`` as multiprocessing.queues.Queue; a subclass overriding
    ``_on_queue_feeder_error`` (as concurrent.futures does) receives the error of an item
    that cannot be pickled instead of a raise, and the queue stays usable."""
    seen = []

    class Handling(polyproc.queues.Queue):
        def __init__(self, maxsize=0, *, ctx):
            super().__init__(maxsize, ctx=ctx)

        def _on_queue_feeder_error(self, e, obj):
            seen.append((type(e), obj))

    q = Handling(2, ctx=polyproc.get_context())
    lock = threading.Lock()
    q.put(lock)
    q.put("fine")
    assert [(SerializationError, lock)] == seen
    assert "fine" == q.get(timeout=SHORT_TIMEOUT)
    with pytest.raises(SerializationError):  # the base class still raises at the call
        polyproc.queues.Queue(ctx=None).put(lock)


def test_semaphores_expose_the_internals_the_stdlib_queue_reads():
    """``sem._semlock._get_value()`` / ``_is_zero()``, as multiprocessing.queues reads them."""
    sem = polyproc.BoundedSemaphore(2)
    assert 2 == sem._semlock._get_value() and not sem._semlock._is_zero()
    sem.acquire()
    sem.acquire()
    assert sem._semlock._is_zero() and 2 == sem.maxvalue
    assert polyproc.synchronize.SEMAPHORE == sem.kind
    assert polyproc.synchronize.RECURSIVE_MUTEX == polyproc.RLock().kind
