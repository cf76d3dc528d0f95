"""Queue, SimpleQueue and JoinableQueue on the shared-memory ring of ``_os._ring``.

How a message travels::

    put(obj) ── pickle in the caller ──> ring (memfd, shared) ──> get() ── unpickle ──> obj
                  (errors raise here)      grows when full,         waits on a futex,
                                           never blocks an          holds no lock while
                                           unbounded put            it waits

Compared with multiprocessing's queue (a pipe fed by a background thread):

* ``put`` of an object that cannot be pickled raises at the call, naming the object,
  instead of printing a traceback in a feeder thread and dropping the item;
* a process can put and exit at once without losing anything, and joining it before
  draining the queue never deadlocks, because there is no feeder thread to flush;
* a consumer killed while blocked in ``get`` holds nothing, and one killed half-way
  through a ``get`` leaves the item for the next consumer;
* ``bytes`` messages of 64 KiB or more skip pickling: one copy in, one copy out.
"""

from __future__ import annotations

import os
import queue
import weakref

from .._os import _ring
from .._os._wait import wait_readable
from .._wire import _pickling
from .._wire._fd_sharing import SharedDescriptor
from ..exceptions import SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]

_ring.set_exceptions(queue.Full, queue.Empty)

RAW_BYTES_THRESHOLD = 64 * 1024
INITIAL_CAPACITY = 1 << 20  # grows by doubling when a put does not fit

_dumps = _pickling.dumps
_loads = _pickling.loads

_all_rings: weakref.WeakSet[Any] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ring in list(_all_rings):
        ring._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _RingQueue:
    """What the three queues share: the ring, its descriptors, pickling, the closed state.

    *ctx* is accepted for code written against ``multiprocessing.queues`` (which takes the
    context that makes its locks); the ring needs none.
    """

    _context = "Queue.put"

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        maxsize = max(maxsize, 0)  # as queue.Queue: a size <= 0 means unbounded
        fd = os.memfd_create("polyproc-queue", os.MFD_CLOEXEC)
        bell = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._setup(SharedDescriptor(fd), SharedDescriptor(bell), maxsize, create=True)

    def _setup(
        self, desc: SharedDescriptor, bell: SharedDescriptor, maxsize: int, *, create: bool
    ) -> None:
        self._desc = desc
        self._bell = bell
        self._maxsize = maxsize
        self._ring = _ring.Ring(desc.fd, create, maxsize, INITIAL_CAPACITY, bell.fd)
        self._closed = False
        self._ignore_epipe = False  # set by concurrent.futures; there is no pipe to break
        self._reader_end: _ReaderEnd | None = None
        self._writer_end: _WriterEnd | None = None
        _all_rings.add(self._ring)

    def __getstate__(self) -> Any:
        return self._desc, self._bell, self._maxsize

    def __setstate__(self, state: Any) -> None:
        desc, bell, maxsize = state
        self._setup(desc, bell, maxsize, create=False)

    def _put(self, obj: Any, block: bool, timeout: float | None) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if type(obj) is bytes and len(obj) >= RAW_BYTES_THRESHOLD:
            self._ring.put(obj, True, block, timeout)
            return
        try:
            data = _dumps(obj, context=self._context)
        except SerializationError as exc:
            if type(self)._on_queue_feeder_error is _RingQueue._on_queue_feeder_error:
                raise
            # A subclass that handles errors itself, as concurrent.futures' call queue
            # does (it fails the future of that call), gets the error instead of a raise.
            self._on_queue_feeder_error(exc, obj)
            return
        self._ring.put(data, False, block, timeout)

    def _on_queue_feeder_error(self, e: BaseException, obj: Any) -> None:
        """Called with the error instead of raising it when a subclass overrides it.

        multiprocessing calls this from its feeder thread for an item that failed to
        pickle; here ``put`` pickles in the caller, so by default the error is raised at
        the call. A subclass that overrides this method receives the error instead.
        """
        raise e

    @property
    def _reader(self) -> _ReaderEnd:
        """The receiving end, shaped like multiprocessing's pipe end: ``recv``, ``poll``,
        ``fileno`` (for :func:`polyproc.connection.wait`), ``close``."""
        if self._reader_end is None:
            self._reader_end = _ReaderEnd(self)
        return self._reader_end

    @property
    def _writer(self) -> _WriterEnd:
        """The sending end, shaped like multiprocessing's pipe end: ``send``, ``close``."""
        if self._writer_end is None:
            self._writer_end = _WriterEnd(self)
        return self._writer_end

    def _get(self, block: bool, timeout: float | None) -> Any:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        raw, data = self._ring.get(block, timeout)
        return data if raw else _loads(data)

    def empty(self) -> bool:
        """Whether the queue holds no item right now."""
        return self._ring.qsize() == 0

    def close(self) -> None:
        """This process will use the queue no more; ``put``/``get`` then raise ValueError.

        Nothing is lost: items already put stay for other processes.
        """
        self._closed = True


class _ReaderEnd:
    """A queue's receiving end as code written for multiprocessing's pipe-based queues
    uses it (``queue._reader``): readiness through an eventfd, the doorbell, that every
    put rings once :meth:`fileno` was called in any process."""

    def __init__(self, queue: _RingQueue) -> None:
        self._queue = queue
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise OSError("handle is closed")

    def fileno(self) -> int:
        """The doorbell: readable while the queue holds an item (for ``wait``/select).

        Raises:
            OSError: this end was closed.
        """
        self._check()
        ring = self._queue._ring
        ring.arm_doorbell()
        if ring.qsize() > 0:  # put before the doorbell was armed: ring it for them
            os.eventfd_write(self._queue._bell.fd, 1)
        return self._queue._bell.fd

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether an item is waiting, after waiting up to *timeout* seconds for one."""
        if self._queue._ring.qsize() > 0:
            return True
        if timeout is not None and timeout <= 0:
            return False
        wait_readable([self.fileno()], timeout)
        return self._queue._ring.qsize() > 0

    def recv(self) -> Any:
        """Take the next item, waiting for one.

        Raises:
            OSError: this end was closed.
        """
        self._check()
        item = self._queue._get(True, None)
        self._settle_doorbell()
        return item

    def _settle_doorbell(self) -> None:
        # Keep "readable" equal to "holds an item": drained when the queue is empty, rung
        # again if a put landed between the check and the drain.
        ring, bell = self._queue._ring, self._queue._bell.fd
        if ring.qsize() == 0:
            try:
                os.eventfd_read(bell)
            except BlockingIOError:
                pass
            if ring.qsize() > 0:
                os.eventfd_write(bell, 1)

    def close(self) -> None:
        """This end will not be used again in this process (the queue stays usable)."""
        self.closed = True


class _WriterEnd:
    """A queue's sending end as code written for multiprocessing uses it
    (``queue._writer``)."""

    def __init__(self, queue: _RingQueue) -> None:
        self._queue = queue
        self.closed = False

    def send(self, obj: Any) -> None:
        """Put *obj* into the queue.

        Raises:
            OSError: this end was closed.
            SerializationError: *obj* cannot be pickled.
        """
        if self.closed:
            raise OSError("handle is closed")
        self._queue._put(obj, True, None)

    def close(self) -> None:
        """This end will not be used again in this process (the queue stays usable)."""
        self.closed = True


class Queue(_RingQueue):
    """A process-shared FIFO queue, as ``multiprocessing.Queue``.

    *maxsize* bounds the number of items (0: unbounded, and ``put`` never blocks).

    Raises:
        SerializationError: from ``put``, for an item that cannot be pickled.
        queue.Full / queue.Empty: as ``queue.Queue``, on timeout or without blocking.
        ValueError: after :meth:`close`.
    """

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put *obj*, waiting up to *timeout* seconds for room in a bounded queue."""
        self._put(obj, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting up to *timeout* seconds for one."""
        return self._get(block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
        self._put(obj, False, None)

    def get_nowait(self) -> Any:
        """``get(False)``."""
        return self._get(False, None)

    def qsize(self) -> int:
        """The number of items in the queue now (exact, unlike multiprocessing's)."""
        return int(self._ring.qsize())

    def full(self) -> bool:
        """Whether a bounded queue holds *maxsize* items now."""
        return self._maxsize > 0 and self._ring.qsize() >= self._maxsize

    def join_thread(self) -> None:
        """Kept for compatibility: there is no feeder thread to wait for.

        Raises:
            AssertionError: the queue is not closed (as in multiprocessing).
        """
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Kept for compatibility: nothing waits for a feeder thread at exit."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} maxsize={self._maxsize} size={self._ring.qsize()}>"


class JoinableQueue(Queue):
    """A Queue that also counts unfinished items: ``task_done`` and ``join``."""

    _context = "JoinableQueue.put"

    def task_done(self) -> None:
        """Mark one item taken with ``get`` as processed.

        Raises:
            ValueError: called more times than items were put.
        """
        self._ring.task_done()

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put has been marked done.

        *timeout* (seconds) is a polyproc extension; returns False if it ran out.
        """
        return bool(self._ring.join(timeout))


class SimpleQueue(_RingQueue):
    """A simplified, unbounded queue: ``put``, ``get``, ``empty``, ``close``."""

    _context = "SimpleQueue.put"

    def __init__(self, *, ctx: Any = None) -> None:
        super().__init__(0, ctx=ctx)

    def put(self, obj: Any) -> None:
        """Put *obj*; never blocks."""
        self._put(obj, True, None)

    def get(self) -> Any:
        """Remove and return the oldest item, waiting for one."""
        return self._get(True, None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} size={self._ring.qsize()}>"
