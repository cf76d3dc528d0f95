"""The loop a pool worker runs: receive batches, run their tasks, report the results.

A *batch* is one message: a function and a list of items, cut into *tasks* of
``chunksize`` items (a ``map`` chunk is one task; an ``imap`` with chunksize 1 sends
several one-item tasks in one batch). A task is the unit that succeeds or fails.

Wire format, over the worker's own socket (`_wire._frames.FrameSocket`):

* parent -> worker: ``BATCH_HEADER(batch_id, start, stop, chunksize)`` followed by
  ``pickle((kind, func, items))``: run ``items[start:stop]`` task by task. The header sits
  outside the pickle, so that a batch the worker cannot unpickle still fails as itself. An
  empty frame asks the worker to exit.
* worker -> parent: ``pickle((REPORT, busy_seconds, outcomes))``, one outcome per run of
  tasks: ``(batch_id, first_item, tasks, ok, values, failure)``; consecutive
  successful tasks of a batch share one outcome. *failure* is ``(type_name,
  packed_exception)``; a success whose values were pickled apart has values None and
  ``(type_names, pickle, buffers)`` in that slot. Between batches, a RESUME frame
  (``b"R"``) ends the tasks the parent took back. Also ``(INIT_FAILED, packed_exception)``,
  ``(RETIRE, reason)`` just before a worker leaves on its own (its memory cap), and
  ``(LOG, record_attributes)`` for forwarded log records.

Reports are buffered while more work is at hand and sent when the worker runs out of work
or every millisecond, so a stream of tiny tasks costs a few system calls per burst instead
of one per task. Because a result may still sit in that buffer when the worker dies, the
worker also counts the tasks it has *started* in shared memory: from that count the
parent tells the task that was running when the worker died from those that had finished
(their results lost: they run again) and those that never started (requeued).

That count is also how the parent takes back tasks queued behind a task that does not end
(see ``Dispatcher._revoke`` in ``_local._dispatch``): the worker *claims* each task by a
compare-and-swap of the count from n to n + 1, and the parent sets the REVOKED bit in the
same word by a compare-and-swap from the count it read. Whichever comes first wins: a task is either
started here or taken back, never both. A worker that finds the bit set skips every task
it holds until the RESUME frame the parent sent right after the bit, then clears the bit.
A second word says how far the worker got in starting (STARTING, INITIALIZING, READY), so
that the parent recognises workers that die before they can take a task.

A result the parent may fail to unpickle (anything but plain scalars, and flat containers
of them) is pickled on its own, inside the report, so that the parent fails that one task
(SerializationError) instead of the whole report.

A worker ignores SIGINT: Ctrl-C is the parent's to handle (it terminates the workers).
"""

from __future__ import annotations

import collections
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time

from .._os import _log
from .._os._atomic import AtomicWord
from .._wire import _pickling
from .._wire._frames import FrameSocket
from .._wire._remote_error import pack_exception as _pack

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "APPLY",
    "BATCH_HEADER",
    "INIT_FAILED",
    "LOG",
    "MAP",
    "READY",
    "REPORT",
    "RESUME",
    "RETIRE",
    "REVOKED",
    "STARMAP",
    "WorkerOptions",
    "worker_main",
]

BATCH_HEADER = struct.Struct("!QIII")
APPLY, MAP, STARMAP = 0, 1, 2
REPORT, INIT_FAILED, RETIRE, LOG = 0, 1, 2, 3
#: The bit of the started-tasks word by which the parent takes back unstarted tasks.
REVOKED = 1 << 62
#: The frame that follows a revocation: the tasks after it are to be run.
RESUME = b"R"
#: Where a worker is in starting (the second word of its shared block).
STARTING, INITIALIZING, READY = 0, 1, 2
#: Bytes of shared memory per worker: the started-tasks word and the start-up word.
SHARED_BYTES = 16
# Results of these types always unpickle: they travel inline in a report.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex, bytearray,
                    _pickling.LargeBytes})
_FLAT = frozenset({tuple, list})
_FLUSH_INTERVAL_S = 0.001
_MEMORY_CHECK_INTERVAL_S = 0.01
_SPIN_S = 0.0002
# Results travel over the worker's own socket: an exception (and its message) may be big.
_EXCEPTION_LIMIT_BYTES = 256 * 1024 * 1024


def pack_exception(exc: BaseException, where: str) -> bytes:
    """The worker's exception, packed whole (see _wire._remote_error)."""
    return _pack(exc, where, _EXCEPTION_LIMIT_BYTES)


class WorkerOptions:
    """What a worker needs to know besides its initializer: plain values, picklable."""

    __slots__ = ("buffer_threshold", "log_level", "max_memory", "maxtasks")

    def __init__(
        self,
        maxtasks: int | None,
        max_memory: int | None,
        log_level: int | None,
        buffer_threshold: int,
    ) -> None:
        self.maxtasks = maxtasks
        self.max_memory = max_memory
        self.log_level = log_level  # forward log records at this level and above, or None
        self.buffer_threshold = buffer_threshold

    def __reduce__(self) -> Any:
        return WorkerOptions, (
            self.maxtasks, self.max_memory, self.log_level, self.buffer_threshold
        )


class _Channel:
    """The worker's side of its socket: sends are locked (log records may come from any
    thread of the worker), and big buffers go out of band."""

    def __init__(self, sock: FrameSocket, threshold: int) -> None:
        self.sock = sock
        self.threshold = threshold
        self.lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        payload, buffers = _pickling.dumps_with_buffers(
            message, self.threshold, context="a pool worker's report"
        )
        with self.lock:
            self.sock.send([(payload, buffers)])


def _forwarding_handler(channel: _Channel, level: int) -> logging.Handler:
    """A handler that sends each record to the parent, which hands it to its handlers.

    Defined on demand: a worker that forwards no logs never imports :mod:`logging`
    (a spawned worker's start-up time).
    """
    import logging

    class ForwardingHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                attributes = dict(record.__dict__)
                attributes["msg"] = record.getMessage()
                attributes["args"] = None
                if record.exc_info:
                    formatter = logging.Formatter()
                    attributes["exc_text"] = formatter.formatException(record.exc_info)
                attributes["exc_info"] = None
                channel.send((LOG, attributes))
            except Exception:
                self.handleError(record)

    return ForwardingHandler(level)


def _forward_logs(channel: _Channel, level: int) -> None:
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):  # inherited by fork: the parent prints instead
        root.removeHandler(handler)
    root.addHandler(_forwarding_handler(channel, level))
    root.setLevel(level)


def _resident_bytes(statm: int) -> int:
    fields = os.pread(statm, 128, 0).split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def worker_main(
    conn: Any,
    started_block: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    options: WorkerOptions,
) -> None:
    """Run batches from *conn* until told to stop, the parent goes, or a limit is hit."""
    words = started_block.view().cast("q")
    words[1] = INITIALIZING
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = FrameSocket(socket.socket(fileno=os.dup(conn.fileno())))
    conn.close()
    channel = _Channel(sock, options.buffer_threshold)
    where = f"pool worker (pid {os.getpid()})"
    if options.log_level is not None:
        _forward_logs(channel, options.log_level)
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            channel.send((INIT_FAILED, pack_exception(exc, where)))
            return
    words[1] = READY
    claim = AtomicWord(started_block.view(), 0)
    try:
        completed = _serve(sock, channel, claim, words, where, options)
    except (EOFError, OSError):
        return  # the parent is gone, or closed our socket: nothing left to report to
    _log.debug("worker exiting after %d tasks", completed)


def _serve(
    sock: FrameSocket, channel: _Channel, claim: AtomicWord, started: memoryview,
    where: str, options: WorkerOptions,
) -> int:
    """Run batches until told to stop or a limit is hit; return the tasks run.

    *claim* and ``started[0]`` are the same word: the count of tasks started, claimed one
    by one (see the module's docstring)."""
    threshold = options.buffer_threshold
    maxtasks = options.maxtasks
    plain = _PLAIN
    statm = os.open("/proc/self/statm", os.O_RDONLY) if options.max_memory else -1
    next_memory_check = 0.0
    queue: collections.deque[tuple[memoryview, list[memoryview]]] = collections.deque()
    outbox: list[list[Any]] = []
    busy = 0.0
    last_flush = time.perf_counter()
    tasks_started = 0
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)

    def flush() -> None:
        nonlocal busy, last_flush
        _send_report(channel, busy, outbox, where)
        outbox.clear()
        busy = 0.0
        last_flush = time.perf_counter()

    while True:
        if not queue:
            if outbox:
                flush()
            if maxtasks is not None and tasks_started >= maxtasks:
                return tasks_started
            _spin_until_readable(poller, _SPIN_S)
            try:
                queue.extend(sock.receive())
            except (EOFError, OSError):
                _log.debug("worker got EOFError or OSError -- exiting")
                return tasks_started
            continue
        frame, buffers = queue.popleft()
        if not frame:
            if outbox:
                flush()
            _log.debug("worker got sentinel -- exiting")
            return tasks_started
        if len(frame) == len(RESUME):  # the end of what the parent took back
            claim.store(tasks_started)
            continue
        if started[0] != tasks_started:
            continue  # taken back by the parent (the REVOKED bit): skip it unread
        began = time.perf_counter()
        batch_id, start, stop, chunksize = BATCH_HEADER.unpack_from(frame)
        try:
            kind, func, items = _pickling.loads(frame[BATCH_HEADER.size :], buffers)
        except BaseException as exc:
            tasks = -(-(stop - start) // chunksize)
            if not claim.compare_and_swap(tasks_started, tasks_started + tasks):
                continue
            tasks_started += tasks
            outbox.append([batch_id, start, tasks, False, [], _failure(exc, where), 1])
            busy += time.perf_counter() - began
            continue
        del frame, buffers
        run: list[Any] | None = None  # the outcome that consecutive successes extend
        position = start
        while position < stop:
            end = min(position + chunksize, stop)
            if not claim.compare_and_swap(tasks_started, tasks_started + 1):
                break  # the parent took back the rest
            tasks_started += 1
            values: list[Any] = []
            try:
                _run_task(kind, func, items, position, end, values)
            except BaseException as exc:
                run = None
                outbox.append(
                    [batch_id, position, 1, False, values, _failure(exc, where), 1]
                )
            else:
                if values and type(values[0]) is bytes:
                    values = _pickling.wrap_large_bytes(values, threshold)
                # The common case (one plain value) without a call: this runs per task.
                if not (len(values) == 1 and type(values[0]) in plain) and not _inline(values):
                    # Pickled apart at the flush: a task of its own in the report.
                    run = None
                    outbox.append([batch_id, position, 1, True, values, _APART, chunksize])
                elif run is None:
                    run = [batch_id, position, 1, True, values, None, chunksize]
                    outbox.append(run)
                else:
                    run[2] += 1
                    run[4].extend(values)
            position = end
            now = time.perf_counter()
            if statm >= 0 and now >= next_memory_check:
                next_memory_check = now + _MEMORY_CHECK_INTERVAL_S
                resident = _resident_bytes(statm)
                if resident > options.max_memory:  # type: ignore[operator]
                    busy += now - began
                    flush()
                    channel.send((RETIRE, f"memory {resident >> 20} MiB over the cap"))
                    return tasks_started
            if now - last_flush >= _FLUSH_INTERVAL_S:
                busy += now - began
                began = now
                flush()
                run = None
        busy += time.perf_counter() - began
        del items, func


def _run_task(
    kind: int, func: Any, items: Any, first: int, end: int, values: list[Any]
) -> None:
    """Run the task of ``items[first:end]``, appending each result to *values* as it comes
    (so that a failure leaves the results before it)."""
    if kind == MAP:
        for item in items[first:end]:
            values.append(func(item))
    elif kind == STARMAP:
        for args in items[first:end]:
            values.append(func(*args))
    else:
        args, kwargs = items
        values.append(func(*args, **kwargs))


def _spin_until_readable(poller: select.poll, seconds: float) -> None:
    """Poll without sleeping for up to *seconds*: when tasks come one at a time, the next
    one usually arrives within microseconds, and a worker still on its CPU takes it up
    without the wake-up latency of a blocked process (tens of microseconds)."""
    deadline = time.perf_counter() + seconds
    while not poller.poll(0) and time.perf_counter() < deadline:
        pass


#: In an outbox entry's exception slot: the values are to be pickled apart.
_APART: Any = object()


def _failure(exc: BaseException, where: str) -> tuple[str, bytes]:
    """A task's exception as a report carries it: its type's name (for the parent to
    name it even if it does not unpickle there) and the packed exception."""
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}", pack_exception(exc, where)


def _inline(values: list[Any]) -> bool:
    """Whether *values* surely unpickle in the parent: plain scalars, or tuples and lists
    of them (checked by type, not by pickling: this runs for every task)."""
    plain = _PLAIN
    for value in values:
        kind = type(value)
        if kind in plain:
            continue
        if kind not in _FLAT:
            return False
        for inner in value:
            if type(inner) not in plain:
                return False
    return True


def _type_names(values: list[Any]) -> str:
    names = dict.fromkeys(f"{type(v).__module__}.{type(v).__qualname__}" for v in values)
    return ", ".join(list(names)[:5])


def _apart(entry: list[Any], threshold: int, where: str) -> tuple[Any, ...]:
    """The outcome of one task whose values are pickled on their own: values None and,
    in the exception slot, ``(type_names, pickle, buffers)`` (buffers kept out of band)."""
    batch_id, first, tasks, _ok, values, _mark, _chunksize = entry
    try:
        payload, buffers = _pickling.dumps_with_buffers(
            values, threshold, context="returning a task's result"
        )
    except Exception as exc:
        return (batch_id, first, tasks, False, [], _failure(exc, where))
    wrapped = [pickle.PickleBuffer(b) for b in buffers]
    return (batch_id, first, tasks, True, None, (_type_names(values), payload, wrapped))


def _send_report(
    channel: _Channel, busy: float, outbox: list[list[Any]], where: str
) -> None:
    threshold = channel.threshold
    outcomes = [
        tuple(entry[:6]) if entry[5] is not _APART else _apart(entry, threshold, where)
        for entry in outbox
    ]
    try:
        channel.send((REPORT, busy, outcomes))
        return
    except Exception:
        pass  # some result cannot be pickled: find it below, task by task
    checked: list[tuple[Any, ...]] = []
    for entry, sent in zip(outbox, outcomes, strict=True):
        batch_id, first, tasks, ok, values, packed, chunksize = entry
        if packed is _APART:
            checked.append(sent)  # pickled already
            continue
        for index in range(tasks):
            part = values[index * chunksize : (index + 1) * chunksize] if tasks > 1 else values
            outcome = (batch_id, first + index * chunksize, 1, ok, part, packed)
            try:
                _pickling.dumps(outcome, context="returning a task's result")
            except Exception as exc:
                outcome = (batch_id, outcome[1], 1, False, [], _failure(exc, where))
            checked.append(outcome)
    channel.send((REPORT, busy, checked))


def run_batch(
    kind: int, func: Any, items: Any, start: int, stop: int, chunksize: int, where: str
) -> list[tuple[Any, ...]]:
    """Run the tasks of ``items[start:stop]`` here and now, and return their outcomes as
    ``(first_item, tasks, ok, values, packed_exception)`` (for engines other than the
    worker loop above, which reports as it goes)."""
    outcomes: list[tuple[Any, ...]] = []
    for first in range(start, stop, chunksize):
        end = min(first + chunksize, stop)
        values: list[Any] = []
        try:
            _run_task(kind, func, items, first, end, values)
        except BaseException as exc:
            outcomes.append((first, 1, False, values, pack_exception(exc, where)))
        else:
            outcomes.append((first, 1, True, values, None))
    return outcomes
