"""Process: the documented interface under every start method, plus polyproc's additions."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import pytest

import polyproc
from polyproc.exceptions import RemoteError, RemoteTraceback, SerializationError
from tests import _workers
from tests._support import SHORT_TIMEOUT


def _run(ctx, target, *args, **kwargs):
    p = ctx.Process(target=target, args=args, kwargs=kwargs)
    p.start()
    p.join(SHORT_TIMEOUT)
    return p


def test_target_receives_args_and_kwargs(ctx):
    """args and kwargs reach the target unchanged."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.echo_args, args=(writer, 1, "two"), kwargs={"three": 3.0})
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    assert ((1, "two"), {"three": 3.0}) == reader.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


def test_child_runs_in_its_own_memory(ctx):
    """The seed's lesson: a child appending to a list does not change the parent's list."""
    info: list[int] = []
    p = _run(ctx, list.append, info, 1)
    assert 0 == p.exitcode
    assert [] == info


def test_identity_in_child(ctx):
    """current_process(), parent_process() and the authkey as seen by the child."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.report_identity, args=(writer,), name="worker-7")
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    seen = reader.recv()
    p.join(SHORT_TIMEOUT)
    assert "worker-7" == seen["name"]
    assert p.pid == seen["pid"] == seen["ident"]
    assert os.getpid() == seen["parent_pid"]
    assert "MainProcess" == seen["parent_name"]
    assert seen["parent_alive"] is True
    assert bytes(polyproc.current_process().authkey) == seen["authkey"]


def test_default_names_count_up(ctx):
    """Unnamed processes are called <Class>-<n>, numbered in creation order."""
    first, second = ctx.Process(), ctx.Process()
    prefix = type(first).__name__ + "-"
    assert first.name.startswith(prefix)
    assert int(second.name[len(prefix):]) == int(first.name[len(prefix):]) + 1


def test_life_cycle_attributes(ctx):
    """pid, exitcode, is_alive and sentinel before, during and after the run."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.signal_then_block, args=(writer,))
    assert p.pid is None and p.exitcode is None and not p.is_alive()
    with pytest.raises(ValueError, match="not started"):
        p.sentinel
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv() == p.pid
    assert p.is_alive() and p.exitcode is None
    assert p in polyproc.active_children()
    assert [] == polyproc.connection.wait([p.sentinel], 0)
    p.terminate()
    assert [p.sentinel] == polyproc.connection.wait([p.sentinel], SHORT_TIMEOUT)
    p.join(SHORT_TIMEOUT)
    assert -signal.SIGTERM == p.exitcode
    assert not p.is_alive()
    assert p not in polyproc.active_children()
    assert "exitcode=-SIGTERM" in repr(p)


def test_kill_gives_negative_sigkill(ctx):
    """kill() ends even a process that ignores SIGTERM; exitcode is -SIGKILL."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.ignore_sigterm_then_block, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    reader.recv()
    p.kill()
    p.join(SHORT_TIMEOUT)
    assert -signal.SIGKILL == p.exitcode


def test_join_with_timeout_returns_while_running(ctx):
    """join(timeout) returns after the timeout with the child still running."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.signal_then_block, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    p.join(0.05)
    assert p.is_alive() and p.exitcode is None
    p.kill()
    p.join(SHORT_TIMEOUT)


@pytest.mark.parametrize(
    ("code", "expected"), [(None, 0), (0, 0), (3, 3), ("bye", 1), (True, 1)]
)
def test_sys_exit_codes(ctx, code, expected):
    """sys.exit(code) in the target sets exitcode as in multiprocessing."""
    assert expected == _run(ctx, _workers.exit_with, code).exitcode


def test_exception_is_reported_with_remote_traceback(ctx, capfd):
    """An exception in the target: exit code 1, traceback on stderr, and p.exception."""
    p = _run(ctx, _workers.raise_value_error, "bad input 42")
    assert 1 == p.exitcode
    assert isinstance(p.exception, ValueError)
    assert "bad input 42" == str(p.exception)
    cause = p.exception.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "raise_value_error" in str(cause)
    if ctx.get_start_method() != "forkserver":  # its children write to the server's stderr
        assert "bad input 42" in capfd.readouterr().err


def test_unpicklable_exception_arrives_as_remote_error(ctx, capfd):
    """An exception that cannot be rebuilt arrives as RemoteError naming its type."""
    p = _run(ctx, _workers.raise_unpicklable_error)
    assert 1 == p.exitcode
    assert isinstance(p.exception, RemoteError)
    assert "UnpicklableError" in str(p.exception)
    assert isinstance(p.exception.__cause__, RemoteTraceback)
    capfd.readouterr()


def test_no_exception_on_success(ctx):
    """p.exception stays None when the target returns normally."""
    assert _run(ctx, _workers.noop).exception is None


def test_subclass_run(ctx):
    """A subclass overriding run() works under every start method."""
    reader, writer = ctx.Pipe(duplex=False)
    p = _workers.Subclassed(writer)
    p._start_method = ctx.get_start_method()
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    assert ("run", p.name) == reader.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


def test_lambda_and_closure_targets(ctx):
    """Lambdas and closures travel by value under spawn and forkserver."""
    reader, writer = ctx.Pipe(duplex=False)
    offset = 40

    def closure(conn, x):
        conn.send(x + offset)

    p = ctx.Process(target=closure, args=(writer, 2))
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and 42 == reader.recv()
    p.join(SHORT_TIMEOUT)
    p = ctx.Process(target=lambda conn: conn.send("from a lambda"), args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and "from a lambda" == reader.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_unpicklable_argument_raises_at_start(method):
    """An argument that cannot be pickled raises at start(), naming it; nothing starts."""
    ctx = polyproc.get_context(method)
    p = ctx.Process(target=_workers.echo_args, args=(None, threading.Lock()))
    with pytest.raises(SerializationError, match=r"_thread\.lock") as info:
        p.start()
    assert "start" in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, pickle.PicklingError)
    assert p.pid is None
    assert [] == polyproc.active_children()


def test_close(ctx):
    """close() refuses while running, then makes the object unusable."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.signal_then_block, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.kill()
    p.join(SHORT_TIMEOUT)
    p.close()
    p.close()  # idempotent
    for call in (p.is_alive, p.join, p.start):
        with pytest.raises(ValueError, match="closed"):
            call()
    with pytest.raises(ValueError):
        p.exitcode
    assert "closed" in repr(p)


def test_misuse_is_reported(ctx):
    """Starting twice or joining an unstarted process raises AssertionError, as in the stdlib."""
    p = ctx.Process(target=_workers.noop)
    with pytest.raises(AssertionError):
        p.join()
    p.start()
    with pytest.raises(AssertionError, match="twice"):
        p.start()
    p.join(SHORT_TIMEOUT)
    with pytest.raises(ValueError):
        ctx.Process(group=object())


def test_daemon_flag(ctx):
    """daemon is inherited by the child's view and cannot change after start."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.report_identity, args=(writer,), daemon=True)
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and reader.recv()["daemon"] is True
    with pytest.raises(AssertionError):
        p.daemon = False
    p.join(SHORT_TIMEOUT)


def test_child_started_from_a_thread_outlives_that_thread(ctx):
    """The no-orphan watch follows the parent process, not the thread that started it."""
    reader, writer = ctx.Pipe(duplex=False)
    started: list = []

    def starter():
        p = ctx.Process(target=_workers.signal_then_block, args=(writer,))
        p.start()
        started.append(p)

    t = threading.Thread(target=starter)
    t.start()
    t.join(SHORT_TIMEOUT)
    assert not t.is_alive()
    p = started[0]
    assert reader.poll(SHORT_TIMEOUT) and reader.recv() == p.pid
    p.join(0.2)  # a child killed with its starting thread would have exited by now
    assert p.is_alive()
    p.kill()
    p.join(SHORT_TIMEOUT)


def test_an_orphan_can_notice_its_parent_died(ctx):
    """Within the grace period, a grandchild sees parent_process() end (stdlib semantics)."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.start_reporting_grandchild, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT) and "alive" == reader.recv()
    p.terminate()
    p.join(SHORT_TIMEOUT)
    assert reader.poll(SHORT_TIMEOUT) and "not alive" == reader.recv()


def test_child_defaults_to_its_context_start_method(ctx):
    """In a child started by a context, get_start_method() names that context's method."""
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_workers.send_start_method, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    assert ctx.get_start_method() == reader.recv()
    p.join(SHORT_TIMEOUT)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_unpicklable_argument_error_names_it_and_never_prints_the_authkey(method):
    """The error names the lock, not the process's authkey, and no authkey bytes leak."""
    process = polyproc.get_context(method).Process(target=print, args=(threading.Lock(),))
    with pytest.raises(SerializationError) as info:
        process.start()
    message = str(info.value)
    assert "_thread.lock" in message and "AuthenticationString" not in message
    key = bytes(polyproc.current_process().authkey)
    assert repr(key)[2:-1] not in message
    assert "32 bytes" in repr(polyproc.current_process().authkey)
    assert repr(key)[2:-1] not in str(polyproc.current_process().authkey)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_tiny_default_socket_timeout_does_not_reach_polyproc_s_own_sockets(method):
    """socket.setdefaulttimeout(0.05) is the program's choice for its sockets: starting a
    process (the fork server's first start included) and passing a connection still work."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import socket, polyproc
        def child(conn):
            conn.send("hello")
        if __name__ == "__main__":
            socket.setdefaulttimeout(0.05)
            ctx = polyproc.get_context({method!r})
            a, b = ctx.Pipe()
            p = ctx.Process(target=child, args=(b,))
            p.start()
            print(a.recv(), flush=True)
            p.join(30)
            print(p.exitcode)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["hello", "0"]
