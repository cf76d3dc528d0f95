"""The stdlib-shaped modules for descriptors, pickling and shared resources:
polyproc.reduction, polyproc.resource_sharer, polyproc.resource_tracker, polyproc.heap."""

from __future__ import annotations

import ctypes
import io
import os
import pickle
import select
import socket
import subprocess
import sys
import textwrap
import threading
import uuid

import pytest

import polyproc
from polyproc import heap, reduction, resource_sharer, resource_tracker
from polyproc._shared import _shm_tracker
from tests import _io_workers
from tests._io_workers import Token
from tests._support import SHORT_TIMEOUT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHM = "/dev/shm"


@pytest.fixture(autouse=True, scope="module")
def token_reducer():
    """Token pickles only through the reducer registered here, in the test process."""
    reduction.register(Token, _io_workers.reduce_token)
    yield


def _start(ctx, target, *args):
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def _finish(p) -> None:
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


def _read(fd: int, size: int) -> bytes:
    """Read *size* bytes from *fd*, waiting at most SHORT_TIMEOUT for each chunk."""
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], SHORT_TIMEOUT)
        assert ready, f"nothing to read after {data!r}"
        chunk = os.read(fd, size - len(data))
        assert chunk, f"end of file after {data!r}"
        data += chunk
    return data


# -- reduction: registered reducers apply to everything polyproc pickles -------------------


def test_forking_pickler_uses_registered_reducer():
    """ForkingPickler.dumps/loads and dump() apply the reducer; dumps gives a buffer."""
    data = reduction.ForkingPickler.dumps(Token(1))
    assert isinstance(data, memoryview | bytes)
    assert (1, "reducer") == _io_workers.describe_token(reduction.ForkingPickler.loads(data))
    buf = io.BytesIO()
    reduction.dump(Token(2), buf)
    assert (2, "reducer") == _io_workers.describe_token(pickle.loads(buf.getvalue()))
    assert reduction.ForkingPickler._extra_reducers[Token] is _io_workers.reduce_token
    with pytest.raises(TypeError):
        pickle.dumps(Token(3))  # the plain pickler knows nothing of the registration


def test_registered_reducer_applies_to_connection_send():
    """Connection.send pickles a registered type with its reducer."""
    a, b = polyproc.Pipe()
    with a, b:
        a.send([Token("x")])
        assert [("x", "reducer")] == [_io_workers.describe_token(t) for t in b.recv()]


def test_registered_reducer_applies_to_process_args(ctx):
    """A registered type reaches a child as an argument (pickled under spawn and the fork
    server; inherited under fork)."""
    reader, writer = ctx.Pipe(duplex=False)
    p = _start(ctx, _io_workers.report_token, writer, Token(41))
    writer.close()
    assert reader.poll(SHORT_TIMEOUT)
    value, via = reader.recv()
    _finish(p)
    assert 41 == value
    assert via == ("constructor" if ctx.get_start_method() == "fork" else "reducer")


def test_registered_reducer_applies_to_queue_items(ctx):
    """A Queue item of a registered type travels through its reducer."""
    queue = ctx.Queue()
    reader, writer = ctx.Pipe(duplex=False)
    p = _start(ctx, _io_workers.report_queued_token, queue, writer)
    writer.close()
    queue.put(Token("queued"))
    assert reader.poll(SHORT_TIMEOUT)
    assert ("queued", "reducer") == reader.recv()
    _finish(p)
    queue.close()


def test_registered_reducer_applies_to_pool_tasks(ctx):
    """A Pool task's argument of a registered type travels through its reducer."""
    with ctx.Pool(1) as pool:
        assert (7, "reducer") == pool.apply(_io_workers.describe_token, (Token(7),))


def test_abstract_reducer_exposes_the_module_api():
    """AbstractReducer carries the module's functions, for context.reducer."""
    reducer = reduction.AbstractReducer()
    assert reducer.ForkingPickler is reduction.ForkingPickler
    assert reducer.DupFd is reduction.DupFd
    assert reducer.send_handle is reduction.send_handle
    assert reduction.HAVE_SEND_HANDLE is True
    assert reduction.ACKNOWLEDGE is False


# -- DupFd: a descriptor that pickles into the receiver's own duplicate -------------------


def test_dupfd_as_process_argument(ctx):
    """A DupFd given to a child at its start gives the child a working descriptor, even
    after the parent closed its own."""
    read_fd, write_fd = os.pipe()
    try:
        dupfd = reduction.DupFd(write_fd)
        os.close(write_fd)
        p = _start(ctx, _io_workers.write_through_dupfd, dupfd, b"started")
        assert b"started" == _read(read_fd, 7)
        _finish(p)
    finally:
        os.close(read_fd)


def test_dupfd_sent_over_a_connection(ctx):
    """A DupFd sent to a running child over a Connection gives it a working descriptor."""
    read_fd, write_fd = os.pipe()
    parent_end, child_end = ctx.Pipe()
    try:
        p = _start(ctx, _io_workers.write_through_received_dupfd, child_end, b"later")
        child_end.close()
        parent_end.send(resource_sharer.DupFd(write_fd))
        os.close(write_fd)
        assert b"later" == _read(read_fd, 5)
        _finish(p)
    finally:
        os.close(read_fd)
        parent_end.close()


def test_dupfd_in_a_custom_reducer(ctx):
    """The standard library's idiom: a registered reducer that wraps a descriptor in a
    DupFd, for a process argument and for a Queue item."""
    reduction.register(_io_workers.Writer, _io_workers.reduce_writer)
    read_fd, write_fd = os.pipe()
    try:
        writer = _io_workers.Writer(write_fd)
        p = _start(ctx, _io_workers.write_with, writer, b"argument")
        assert b"argument" == _read(read_fd, 8)
        _finish(p)
        queue = ctx.Queue()
        queue.put(writer)
        received = queue.get(timeout=SHORT_TIMEOUT)
        assert received.fd != write_fd  # its own duplicate
        _io_workers.write_with(received, b"item")
        os.close(received.fd)
        assert b"item" == _read(read_fd, 4)
        queue.close()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_dupfd_detach_and_errors():
    """detach() hands over the descriptor once; a bad descriptor raises OSError."""
    read_fd, write_fd = os.pipe()
    dupfd = reduction.DupFd(write_fd)
    os.close(write_fd)
    fd = pickle.loads(pickle.dumps(dupfd)).detach()  # through this process's fd server
    os.write(fd, b"z")
    os.close(fd)
    assert b"z" == _read(read_fd, 1)
    os.close(dupfd.detach())
    os.close(read_fd)
    with pytest.raises(ValueError):
        dupfd.detach()
    with pytest.raises(ValueError):
        pickle.dumps(dupfd)
    with pytest.raises(OSError):
        reduction.DupFd(read_fd)  # closed by now


def test_resource_sharer_stop():
    """stop() ends the fd server: a pickle made before cannot be taken any more, and the
    next DupFd starts a new server."""
    read_fd, write_fd = os.pipe()
    try:
        stale = pickle.dumps(resource_sharer.DupFd(write_fd))
        resource_sharer.stop(SHORT_TIMEOUT)
        name = f"polyproc-fd-server-{os.getpid()}"
        assert name not in [t.name for t in threading.enumerate()]
        with pytest.raises(OSError):
            pickle.loads(stale)
        fresh = pickle.loads(pickle.dumps(resource_sharer.DupFd(write_fd)))
        os.close(fresh.detach())
        resource_sharer.stop()
        resource_sharer.stop()  # nothing running: does nothing
    finally:
        os.close(read_fd)
        os.close(write_fd)


# -- send_handle / recv_handle / sendfds / recvfds ----------------------------------------


def test_send_handle_to_a_child(ctx):
    """The parent passes a pipe's write end to a running child over a duplex Pipe."""
    read_fd, write_fd = os.pipe()
    parent_end, child_end = ctx.Pipe()
    try:
        p = _start(ctx, _io_workers.recv_handle_and_write, child_end, b"handed")
        child_end.close()
        reduction.send_handle(parent_end, write_fd, p.pid)
        os.close(write_fd)
        assert b"handed" == _read(read_fd, 6)
        _finish(p)
    finally:
        os.close(read_fd)
        parent_end.close()


def test_recv_handle_from_a_child(ctx):
    """A child passes the parent a descriptor; the parent reads through it."""
    parent_end, child_end = ctx.Pipe()
    with parent_end:
        p = _start(ctx, _io_workers.send_handle_to_parent, child_end, b"from child")
        child_end.close()
        assert parent_end.poll(SHORT_TIMEOUT)
        fd = reduction.recv_handle(parent_end)
        try:
            assert b"from child" == _read(fd, 10)
        finally:
            os.close(fd)
        _finish(p)


def test_messages_and_handles_share_a_connection():
    """Connection messages before and after a handle arrive intact."""
    a, b = polyproc.Pipe()
    read_fd, write_fd = os.pipe()
    with a, b:
        a.send("before")
        reduction.send_handle(a, write_fd, os.getpid())
        a.send("after")
        assert "before" == b.recv()
        fd = reduction.recv_handle(b)
        assert "after" == b.recv()
    os.write(fd, b"q")
    for d in (fd, write_fd):
        os.close(d)
    assert b"q" == _read(read_fd, 1)
    os.close(read_fd)


def test_send_handle_needs_a_socket():
    """A one-way Pipe end is a pipe, not a socket: OSError."""
    reader, writer = polyproc.Pipe(duplex=False)
    with reader, writer, pytest.raises(OSError):
        reduction.send_handle(writer, 0, os.getpid())


def test_sendfds_recvfds_several():
    """Several descriptors at once; a count mismatch and a closed peer are errors."""
    left, right = socket.socketpair()
    read_fd, write_fd = os.pipe()
    with left, right:
        reduction.sendfds(left, [read_fd, write_fd])
        got = reduction.recvfds(right, 2)
        assert 2 == len(got)
        os.write(got[1], b"m")
        assert b"m" == _read(got[0], 1)
        reduction.sendfds(left, [read_fd])
        with pytest.raises(RuntimeError):
            reduction.recvfds(right, 2)
        left.close()
        with pytest.raises(EOFError):
            reduction.recvfds(right, 1)
    for fd in (*got, read_fd, write_fd):
        os.close(fd)


# -- heap ---------------------------------------------------------------------------------


def test_buffer_wrapper_shared_with_a_child(ctx):
    """A child writes into a BufferWrapper; the parent sees the bytes."""
    wrapper = heap.BufferWrapper(32)
    view = wrapper.create_memoryview()
    assert 32 == len(view) and bytes(32) == bytes(view)
    p = _start(ctx, _io_workers.fill_buffer, wrapper, b"written by the child")
    _finish(p)
    assert b"written by the child" == bytes(view[:20])


def test_buffer_wrapper_as_ctypes_memory():
    """sharedctypes' use: a ctypes object laid over the wrapper's memory."""
    wrapper = heap.BufferWrapper(ctypes.sizeof(ctypes.c_int) * 4)
    array = (ctypes.c_int * 4).from_buffer(wrapper.create_memoryview())
    array[2] = 99
    again = reduction.ForkingPickler.loads(reduction.ForkingPickler.dumps(wrapper))
    assert 99 == (ctypes.c_int * 4).from_buffer(again.create_memoryview())[2]
    (arena, start, stop), size = wrapper._state
    assert size == 16 and stop - start == 16
    assert isinstance(arena, heap.Arena)
    with pytest.raises(ValueError):
        heap.BufferWrapper(-1)


def test_heap_malloc_and_free():
    """malloc() hands out zeroed blocks of an arena; a freed block comes back zeroed."""
    h = heap.Heap()
    arena, start, stop = block = h.malloc(100)
    assert stop - start == 100 and stop <= arena.size
    arena.buffer[start:stop] = b"x" * 100
    h.free(block)
    h.free(block)  # twice: nothing
    arena2, start2, stop2 = h.malloc(100)
    assert bytes(100) == arena2.buffer[start2:stop2]
    with pytest.raises(ValueError):
        h.malloc(-1)


def test_arena_shared_with_a_child(ctx):
    """An Arena pickles into the same memory for another process."""
    arena = heap.Arena(4096)
    assert 4096 == arena.size and arena.fd >= 0
    assert arena is reduction.ForkingPickler.loads(reduction.ForkingPickler.dumps(arena))
    p = _start(ctx, _io_workers.fill_arena, arena, b"arena")
    _finish(p)
    assert b"arena" == arena.buffer[:5]


# -- resource_tracker ---------------------------------------------------------------------


def _script(tmp_path, body: str) -> tuple[list[str], dict[str, str]]:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop(_shm_tracker.ENV_VAR, None)  # this process's tracker is not the script's
    return [sys.executable, str(path)], env


def _segment_name() -> str:
    return f"pp_rt_{os.getpid()}_{uuid.uuid4().hex[:12]}"


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name))


def _remove(*names: str) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(SHM, name))
        except FileNotFoundError:
            pass


REGISTER_AND_WAIT = """
    import os, signal, sys
    import polyproc
    from polyproc import resource_tracker

    def create(name):
        os.close(os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        resource_tracker.register("/" + name, "shared_memory")

    def create_and_die(name):
        create(name)
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        method, kept, dropped = sys.argv[1:4]
        if method == "main":
            create(kept)
        else:
            # A child registers and is killed: the segment outlives it (the application
            # goes on) and goes with the application.
            p = polyproc.get_context(method).Process(target=create_and_die, args=(kept,))
            p.start()
            p.join(30)
            print("child", p.exitcode, os.path.exists("/dev/shm/" + kept), flush=True)
        create(dropped)
        resource_tracker.unregister("/" + dropped, "shared_memory")
        resource_tracker.register("sem", "semaphore")  # accepted, nothing to clean
        print("ready", flush=True)
        sys.stdin.readline()
"""


def _register_then_kill(tmp_path, method: str) -> None:
    """Run REGISTER_AND_WAIT, SIGKILL its main process, check what the tracker removed."""
    kept, dropped = _segment_name(), _segment_name()
    argv, env = _script(tmp_path, REGISTER_AND_WAIT)
    proc = subprocess.Popen(
        [*argv, method, kept, dropped],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        # Raw reads: a buffered readline() could take both lines while select() waits
        # for the second.
        out = b""
        while not out.endswith(b"ready\n"):
            ready, _, _ = select.select([proc.stdout], [], [], SHORT_TIMEOUT)
            assert ready, f"the script printed only {out!r}"
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, (out, proc.communicate(timeout=SHORT_TIMEOUT))
            out += chunk
        lines = out.decode().splitlines()
        if method != "main":
            assert f"child {-9} True" == lines[0]
        assert _exists(kept) and _exists(dropped)
        proc.kill()
        # The tracker holds the script's stderr until it has cleaned up and exited.
        _, err = proc.communicate(timeout=SHORT_TIMEOUT)
        assert not _exists(kept), err
        assert _exists(dropped)
        assert "leaked shared_memory" in err
    finally:
        proc.kill()
        proc.communicate(timeout=SHORT_TIMEOUT)
        _remove(kept, dropped)


def test_registered_segment_removed_after_sigkill(tmp_path):
    """A segment registered with resource_tracker and not unregistered is unlinked once
    the application's main process, which registered it, is SIGKILLed; an unregistered
    one stays."""
    _register_then_kill(tmp_path, "main")


def test_segment_registered_by_a_killed_child(tmp_path, ctx):
    """A child registers a segment and is SIGKILLed: the segment stays while the
    application runs, and goes when its main process is SIGKILLed."""
    _register_then_kill(tmp_path, ctx.get_start_method())


CUSTOM_TYPE = """
    import os, sys
    from polyproc import resource_tracker

    resource_tracker._CLEANUP_FUNCS["pp_test_file"] = os.unlink
    left, unregistered, missing = sys.argv[1:4]
    resource_tracker.register(left, "pp_test_file")
    resource_tracker.register(unregistered, "pp_test_file")
    resource_tracker.unregister(unregistered, "pp_test_file")
    resource_tracker.register(missing, "pp_test_file")  # its cleanup fails: a warning
    try:
        resource_tracker.register("x", "no_such_type")
    except ValueError:
        print("unknown type refused")
"""


def test_custom_resource_type_cleaned_at_exit(tmp_path):
    """A type a library adds to _CLEANUP_FUNCS is cleaned when the main process exits."""
    left, unregistered = tmp_path / "left", tmp_path / "unregistered"
    left.write_text("")
    unregistered.write_text("")
    argv, env = _script(tmp_path, CUSTOM_TYPE)
    result = subprocess.run(
        [*argv, str(left), str(unregistered), str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=SHORT_TIMEOUT,
        cwd=tmp_path,
        env=env,
    )
    assert 0 == result.returncode, result.stderr
    assert "unknown type refused" in result.stdout
    assert not left.exists()
    assert unregistered.exists()
    assert "2 leaked pp_test_file objects" in result.stderr
    assert "FileNotFoundError" in result.stderr


def test_tracker_api_in_process():
    """ensure_running/getfd reach the tracker; the module functions are the instance's."""
    resource_tracker.ensure_running()
    fd = resource_tracker.getfd()
    assert fd >= 0
    os.fstat(fd)  # an open descriptor
    assert isinstance(resource_tracker._resource_tracker, resource_tracker.ResourceTracker)
    assert resource_tracker.register == resource_tracker._resource_tracker.register
    for key in ("noop", "semaphore", "shared_memory"):
        assert key in resource_tracker._CLEANUP_FUNCS
    resource_tracker.register("/anything", "semaphore")
    resource_tracker.unregister("/anything", "semaphore")
    resource_tracker.unregister("/never-registered", "shared_memory")
    with pytest.raises(ValueError):
        resource_tracker.register("/x", "unknown")


def test_shared_memory_cleanup_function_unlinks(tmp_path):
    """_CLEANUP_FUNCS['shared_memory'] is shm_unlink."""
    name = _segment_name()
    os.close(os.open(os.path.join(SHM, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    try:
        resource_tracker._CLEANUP_FUNCS["shared_memory"]("/" + name)
        assert not _exists(name)
        with pytest.raises(FileNotFoundError):
            resource_tracker._CLEANUP_FUNCS["shared_memory"]("/" + name)
    finally:
        _remove(name)
