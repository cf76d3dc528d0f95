"""Functions that run in child processes.

They live at module level in an importable module so that spawn and the fork server can
find them by reference.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import polyproc


def noop() -> None:
    """Do nothing."""


def send_value(conn: Any, value: Any) -> None:
    """Send *value* back over *conn*."""
    conn.send(value)
    conn.close()


def report_identity(conn: Any) -> None:
    """Send what the child knows about itself and its parent."""
    me = polyproc.current_process()
    parent = polyproc.parent_process()
    conn.send(
        {
            "name": me.name,
            "pid": os.getpid(),
            "ident": me.ident,
            "daemon": me.daemon,
            "authkey": bytes(me.authkey),
            "parent_pid": parent.pid if parent else None,
            "parent_name": parent.name if parent else None,
            "parent_alive": parent.is_alive() if parent else None,
            "main_name": sys.modules["__main__"].__name__,
        }
    )


def echo_args(conn: Any, *args: Any, **kwargs: Any) -> None:
    """Send back the arguments received."""
    conn.send((args, kwargs))


def exit_with(code: Any) -> None:
    """Leave through sys.exit(code)."""
    sys.exit(code)


def raise_value_error(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


class UnpicklableError(Exception):
    """An exception whose __init__ breaks unpickling."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}+{b}")


def raise_unpicklable_error() -> None:
    """Raise an exception that cannot be rebuilt from its args."""
    raise UnpicklableError(1, 2)


def signal_then_block(started: Any) -> None:
    """Tell the parent we are running (send on a Connection), then block forever."""
    started.send(os.getpid())
    while True:
        signal.pause()


def ignore_sigterm_then_block(started: Any) -> None:
    """Ignore SIGTERM, tell the parent, then block."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started.send(os.getpid())
    while True:
        signal.pause()


def start_grandchild(conn: Any, method: str) -> None:
    """Start a child of our own that blocks; report its pid; then block."""
    ctx = polyproc.get_context(method)
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=signal_then_block, args=(writer,))
    child.start()
    conn.send(reader.recv())
    while True:
        signal.pause()


def recv_and_reply(conn: Any) -> None:
    """Receive objects and send back their repr until None arrives."""
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(obj)


class Subclassed(polyproc.Process):
    """A Process subclass overriding run()."""

    def __init__(self, conn: Any) -> None:
        super().__init__()
        self.conn = conn

    def run(self) -> None:
        self.conn.send(("run", self.name))


def use_sent_connection_and_socket(conn: Any) -> None:
    """Receive a (Connection, socket) pair and greet through both."""
    other, sock = conn.recv()
    other.send("hello over a sent connection")
    sock.sendall(b"hello over a sent socket")
    other.close()
    sock.close()


def hold_lock_then_block(lock: Any, conn: Any) -> None:
    """Acquire *lock*, say so, and block holding it (until killed)."""
    lock.acquire()
    conn.send("holding")
    while True:
        signal.pause()


def increment_many(value: Any, times: int) -> None:
    """Increment a shared Value *times* times under its lock."""
    for _ in range(times):
        with value.get_lock():
            value.value += 1


def negate_all(num: Any, arr: Any) -> None:
    """The seed's Value/Array example: set num to pi, negate every item."""
    num.value = 3.1415927
    for i in range(len(arr)):
        arr[i] = -arr[i]


def wait_on_condition(cond: Any, ready: Any, conn: Any) -> None:
    """Wait on *cond* after releasing *ready*; report whether we were notified."""
    with cond:
        ready.release()
        conn.send(cond.wait(30))


def wait_for_event(event: Any, conn: Any) -> None:
    """Report the result of waiting on *event*."""
    conn.send(event.wait(30))


def cross_barrier(barrier: Any, conn: Any) -> None:
    """Wait at *barrier* and report our index."""
    conn.send(barrier.wait(30))


def print_under_lock(lock: Any, i: int) -> None:
    """The seed's Lock example."""
    with lock:
        print("hello world", i, flush=True)


def put_n_hello(q: Any, n: int) -> None:
    """The seed's Queue example: put [n, 'hello']."""
    q.put([n, "hello"])


def put_many_and_exit(q: Any, count: int, size: int) -> None:
    """Put *count* items of *size* bytes and exit at once, without waiting for readers."""
    for i in range(count):
        q.put((i, b"x" * size))


def get_forever(q: Any, started: Any) -> None:
    """Say we are about to block in get(), then block there (until killed)."""
    started.send("waiting")
    q.get()


def get_one_into(q: Any, out: Any) -> None:
    """Take one item from *q* and pass it on to *out*."""
    out.put(q.get(timeout=30))


def consume_and_mark_done(q: Any, count: int) -> None:
    """Get *count* items from a JoinableQueue, marking each done."""
    for _ in range(count):
        q.get(timeout=30)
        q.task_done()


def put_range(q: Any, start: int, count: int) -> None:
    """Put start, start+1, ... (count items)."""
    for i in range(start, start + count):
        q.put(i)


def sum_items(q: Any, count: int, out: Any) -> None:
    """Get *count* items, put their sum on *out*."""
    out.put(sum(q.get(timeout=30) for _ in range(count)))


def reply_through_sent_queue(inbox: Any) -> None:
    """Receive a queue through *inbox* and put a greeting into it."""
    inbox.get(timeout=30).put("through a queue that travelled")


def hold_shared_state_and_block(lock: Any, value: Any, q: Any, conn: Any) -> None:
    """Use shared objects, make more of our own, report our pid, then block."""
    with lock:
        value.value += 1
    own = (polyproc.Lock(), polyproc.Queue(), polyproc.Array("i", 100))
    own[1].put(b"x" * 100_000)
    q.put(os.getpid())
    conn.send(os.getpid())
    while True:
        signal.pause()


def square(x: int) -> int:
    """x * x."""
    return x * x


def kill_myself(x: Any) -> None:
    """Die by SIGKILL, as the OOM killer would do it."""
    os.kill(os.getpid(), signal.SIGKILL)


def block_forever(x: Any) -> None:
    """Never return (until killed)."""
    while True:
        signal.pause()


def fail_with(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def failing_initializer() -> None:
    """An initializer that raises."""
    raise RuntimeError("cannot initialise")


def my_pid(x: Any = None) -> int:
    """This process's pid."""
    return os.getpid()


def report_parent_status(conn: Any) -> None:
    """Report whether our parent is alive, wait for it to end, report again."""
    parent = polyproc.parent_process()
    conn.send("alive" if parent.is_alive() else "not alive")
    parent.join(timeout=30)
    conn.send("alive" if parent.is_alive() else "not alive")


def start_reporting_grandchild(conn: Any) -> None:
    """Start a child that reports on us, then wait to be terminated."""
    child = polyproc.Process(target=report_parent_status, args=(conn,))
    child.start()
    child.join()


def send_start_method(conn: Any) -> None:
    """Send the default start method as this child sees it."""
    conn.send(polyproc.get_start_method())


def segfault(x: Any) -> None:
    """Crash with a segmentation fault, as a bug in native code would.

    The fault handler pytest enabled (and a forked worker inherits) is turned off first:
    the crash is intended, and a green run should not print a fatal error and a stack.
    """
    import ctypes
    import faulthandler

    faulthandler.disable()
    ctypes.string_at(0)


def exit_abruptly(code: int) -> None:
    """Leave with os._exit(code), skipping all cleanup."""
    os._exit(code)


def meet_at_barrier(barrier: Any) -> int:
    """Wait at *barrier*: only succeeds if another worker runs at the same time."""
    return int(barrier.wait(30))


# -- pool extensions: retries, memory cap, forwarded logs, large buffers ------------------


def crash_on_first_attempt(counter: Any, x: int) -> int:
    """Kill this worker the first time (a shared counter says which attempt it is)."""
    with counter.get_lock():
        counter.value += 1
        attempt = counter.value
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * 10


class FlakyError(Exception):
    """Raised by a task that succeeds when tried again."""


def fail_until_attempt(counter: Any, succeed_on: int) -> int:
    """Raise FlakyError until the *succeed_on*-th attempt; return the attempt number."""
    with counter.get_lock():
        counter.value += 1
        attempt = int(counter.value)
    if attempt < succeed_on:
        raise FlakyError(f"attempt {attempt}")
    return attempt


def block_on_first_attempt(counter: Any) -> str:
    """Block forever the first time (to be timed out), return at once afterwards."""
    with counter.get_lock():
        counter.value += 1
        attempt = counter.value
    if attempt == 1:
        threading.Event().wait()
    return "done"


_hoard: list[bytearray] = []


def hoard_memory(megabytes: int) -> int:
    """Keep *megabytes* more resident in this worker; return its pid."""
    block = bytearray(megabytes << 20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # touch every page so it is resident
    _hoard.append(block)
    return os.getpid()


def log_a_warning(message: str) -> int:
    """Log *message* at WARNING on logger 'tests.pool'; return this worker's pid."""
    import logging

    logging.getLogger("tests.pool").warning("from worker: %s", message)
    return os.getpid()


def kill_myself_at(target: int, x: int) -> int:
    """Return x + 1, except that item *target* kills its worker."""
    if x == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


def unpicklable_at(target: int, x: int) -> Any:
    """Return x, except that item *target* returns something that cannot be pickled."""
    if x == target:
        return threading.Lock()
    return x


def array_checksum(array: Any) -> tuple[float, bool]:
    """The sum of *array* and whether it arrived in shared memory (a mapping)."""
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return float(array.sum()), isinstance(base, mmap.mmap)


def make_array(n: int) -> Any:
    """A float64 array of *n* items, 0..n-1."""
    import numpy

    return numpy.arange(n, dtype=numpy.float64)


def bytes_of(n: int) -> bytes:
    """*n* bytes counting up mod 256."""
    return bytes(i % 256 for i in range(256)) * (n // 256)


# -- managers ------------------------------------------------------------------------------


def fill_dict_and_reverse(d: Any, lst: Any) -> None:
    """The seed's manager example: set three keys, reverse the list."""
    d[1] = "1"
    d["2"] = 2
    d[0.25] = None
    lst.reverse()


def use_proxy_then_block(proxy: Any, conn: Any) -> None:
    """Use *proxy* (so this process holds a reference), report, then wait to be killed."""
    conn.send(len(proxy))
    threading.Event().wait()


def hammer_dict(d: Any, lock: Any, counter: Any, worker: int, count: int) -> None:
    """Set *count* keys of its own in *d*, and add 1 to *counter* under *lock* each time."""
    for i in range(count):
        d[f"{worker}-{i}"] = i
        with lock:
            counter.value += 1


def set_item(args: tuple[Any, Any]) -> int:
    """``d[key] = key`` for a pool task; returns the pid that did it."""
    d, key = args
    d[key] = key
    return os.getpid()


# -- polyproc map --------------------------------------------------------------------------


def shout_or_die(line: str) -> str:
    """The line in capitals; "kill" kills the worker, "block" never returns, "fail" raises."""
    if line == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if line == "block":
        threading.Event().wait()
    if line == "fail":
        raise ValueError("asked to fail")
    return line.upper()


def add_fields(record: dict[str, int]) -> int:
    """``record["a"] + record["b"]`` (for JSON-lines input)."""
    return record["a"] + record["b"]


# -- the Dask engine -----------------------------------------------------------------------


def kill_this_process(x: Any) -> None:
    """Die at once, as the OOM killer would kill a worker (SIGKILL)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_once_then_square(marker: str, x: int) -> int:
    """Kill this process the first time (the *marker* file does not exist yet); after
    that, return x * x."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return x * x
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    return -1


def busy_for(seconds: float) -> float:
    """Spin on the CPU for *seconds* (a task that takes a while), then return it."""
    import time

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return seconds


def hammer_lock_on_signal(lock: Any, go: Any, conn: Any) -> None:
    """When *go* arrives, take and release *lock* many times; report success."""
    go.recv()
    for _ in range(1000):
        lock.acquire()
        lock.release()
    conn.send(lock.acquire(timeout=5) and not lock.release())


def read_pickled_value(data: bytes, conn: Any) -> None:
    """Unpickle a shared Value pickled by the parent and send its value."""
    from polyproc._wire import _pickling

    conn.send(_pickling.loads(data).value)
