"""The process-machinery modules of the stdlib's shape: spawn, forkserver, popen_*, util.

Each is exercised for real: Popen objects start processes, finalizers run at the exit of
real children and interpreters, the fork server is started and stopped.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import polyproc
from polyproc import (
    context,
    forkserver,
    popen_fork,
    popen_forkserver,
    popen_spawn_posix,
    spawn,
    util,
)
from polyproc.connection import wait
from tests import _proc_workers
from tests._support import SHORT_TIMEOUT, START_METHODS

POPEN_CLASSES = {
    "fork": popen_fork.Popen,
    "spawn": popen_spawn_posix.Popen,
    "forkserver": popen_forkserver.Popen,
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter that can import polyproc and the tests."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=SHORT_TIMEOUT, env=env, cwd=ROOT, **kwargs,
    )


# -- popen_fork, popen_spawn_posix, popen_forkserver ------------------------------------


@pytest.mark.parametrize("method", START_METHODS)
def test_popen_runs_a_process_object_and_reports_its_exit(method):
    """Popen(process) starts it with its method; pid, sentinel, poll, wait, returncode."""
    cls = POPEN_CLASSES[method]
    assert method == cls.method
    p = polyproc.Process(target=_proc_workers.exit_with, args=(7,))
    popen = cls(p)
    try:
        assert popen.pid > 0 and popen.pid != os.getpid()
        assert [popen.sentinel] == wait([popen.sentinel], SHORT_TIMEOUT)
        assert 7 == popen.wait(SHORT_TIMEOUT)
        assert 7 == popen.returncode == popen.poll() == popen.poll(0)
        assert 7 == popen.wait()
    finally:
        popen.close()
    popen.close()  # idempotent


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize(("action", "signum"), [("terminate", signal.SIGTERM),
                                                ("kill", signal.SIGKILL)])
def test_popen_terminate_and_kill(method, action, signum):
    """terminate() and kill() signal the child; the exit code is minus the signal."""
    reader, writer = polyproc.Pipe(duplex=False)
    popen = POPEN_CLASSES[method](
        polyproc.Process(target=_proc_workers.wait_for_message, args=(reader,))
    )
    try:
        assert popen.poll() is None
        assert popen.wait(0) is None
        getattr(popen, action)()
        assert -signum == popen.wait(SHORT_TIMEOUT)
        getattr(popen, action)()  # after the end: nothing to do, no error
    finally:
        popen.close()
        reader.close()
        writer.close()


@pytest.mark.parametrize("method", START_METHODS)
def test_context_process_popen_hook(method):
    """Process._Popen of each context starts the process with that context's method."""
    popen = polyproc.get_context(method).Process._Popen(
        polyproc.Process(target=_proc_workers.exit_with, args=(3,))
    )
    try:
        assert method == popen.method
        assert 3 == popen.wait(SHORT_TIMEOUT)
    finally:
        popen.close()


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_duplicate_for_child_carries_a_descriptor(method):
    """During the pickling of a start, get_spawning_popen() is the Popen and an object can
    send a descriptor with popen.DupFd(popen.duplicate_for_child(fd))."""
    read_fd, write_fd = os.pipe()
    try:
        p = polyproc.Process(
            target=_proc_workers.write_through,
            args=(_proc_workers.FdCarrier(write_fd), b"through the dup"),
        )
        popen = POPEN_CLASSES[method](p)
        os.close(write_fd)
        write_fd = -1
        try:
            assert 0 == popen.wait(SHORT_TIMEOUT)
        finally:
            popen.close()
        assert b"through the dup" == os.read(read_fd, 100)
        assert context.get_spawning_popen() is None  # cleared after the start
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_fork_popen_duplicate_for_child_is_the_descriptor():
    """After a fork the child has the very same descriptor numbers."""
    popen = popen_fork.Popen(polyproc.Process(target=_proc_workers.exit_with, args=(0,)))
    try:
        assert 5 == popen.duplicate_for_child(5)
        assert 0 == popen.wait(SHORT_TIMEOUT)
    finally:
        popen.close()


# -- context ----------------------------------------------------------------------------


def test_assert_spawning_outside_a_start():
    """assert_spawning raises unless a Popen is pickling; set/get_spawning_popen."""
    with pytest.raises(RuntimeError, match="FdCarrier objects should only be shared"):
        context.assert_spawning(_proc_workers.FdCarrier(0))
    marker = object()
    context.set_spawning_popen(marker)
    try:
        assert marker is context.get_spawning_popen()
        context.assert_spawning(object())
        seen = []
        thread = threading.Thread(target=lambda: seen.append(context.get_spawning_popen()))
        thread.start()
        thread.join()
        assert [None] == seen  # per thread
    finally:
        context.set_spawning_popen(None)
    assert context.get_spawning_popen() is None


def test_reducer_and_default_context():
    """The reducer is polyproc.reduction, at package, context and module level; settable."""
    import polyproc.reduction

    assert polyproc.reduction is polyproc.reducer
    assert polyproc.reduction is context._default_context.reducer
    assert polyproc.reduction is polyproc.get_context("spawn").reducer
    assert polyproc.reduction is context.reduction
    assert context._default_context is context.default_context
    replacement = type(sys)("replacement_reducer")
    ctx = polyproc.get_context("fork")
    ctx.reducer = replacement
    try:
        assert replacement is ctx.reducer is context.reduction
    finally:
        ctx.reducer = polyproc.reduction
    assert 5 == polyproc.SUBDEBUG and 25 == polyproc.SUBWARNING
    assert "reducer" in polyproc.__all__


# -- util: Finalize ------------------------------------------------------------------------


def test_finalize_call_cancel_repr_and_gc():
    """A finalizer runs once (called or collected); cancel stops it; repr tells its state."""
    calls: list[object] = []
    keeper = _proc_workers.Keeper()
    f = util.Finalize(keeper, calls.append, args=("called",))
    assert f.still_active()
    assert "callback=append" in repr(f)
    f()
    f()
    assert ["called"] == calls
    assert not f.still_active()
    assert "dead" in repr(f)

    g = util.Finalize(keeper, calls.append, args=("cancelled",), exitpriority=3)
    assert "exitpriority=3" in repr(g)
    g.cancel()
    g()
    assert not g.still_active()

    def record(item: str, *, suffix: str) -> None:
        calls.append(item + suffix)

    util.Finalize(keeper, record, args=("collect",), kwargs={"suffix": "ed"})
    del keeper
    gc.collect()
    assert ["called", "collected"] == calls


def test_finalize_argument_errors():
    """exitpriority must be an int; without an object it is required."""
    with pytest.raises(ValueError, match="exitpriority cannot be None"):
        util.Finalize(None, print)
    with pytest.raises(TypeError, match="must be None or int"):
        util.Finalize(None, print, exitpriority=1.5)  # type: ignore[arg-type]


def test_run_finalizers_with_a_minimum_priority():
    """_run_finalizers(p) runs priorities >= p, highest and newest first; a failing callback
    is reported and the others still run."""
    order: list[str] = []
    kept = [
        util.Finalize(None, order.append, args=("a2",), exitpriority=1000),
        util.Finalize(None, order.append, args=("b2",), exitpriority=1000),
        util.Finalize(None, lambda: 1 / 0, exitpriority=1001),
        util.Finalize(None, order.append, args=("c3",), exitpriority=1002),
        util.Finalize(None, order.append, args=("low",), exitpriority=999),
    ]
    try:
        util._run_finalizers(1000)
        assert ["c3", "b2", "a2"] == order
        assert kept[-1].still_active()
    finally:
        kept[-1].cancel()


@pytest.mark.parametrize("method", START_METHODS)
@pytest.mark.parametrize("exit_code", [0, 3])
def test_finalizers_run_at_child_exit_in_order(method, exit_code, tmp_path):
    """A child runs its finalizers that have an exitpriority at exit, in the documented
    order, whether its target returns or calls sys.exit; others do not run."""
    log = tmp_path / "log"
    p = polyproc.get_context(method).Process(
        target=_proc_workers.register_finalizers, args=(str(log), exit_code)
    )
    p.start()
    p.join(SHORT_TIMEOUT)
    assert exit_code == p.exitcode
    expected = ["p10-second", "p10-first", "exiting=True", "p1", "p0", "p-5"]
    assert expected == log.read_text().split()


def test_parent_finalizers_do_not_run_in_a_forked_child(tmp_path):
    """A forked child inherits no finalizer of its parent."""
    log = tmp_path / "log"
    mine = util.Finalize(None, _proc_workers.append_line, args=(str(log), "parent"),
                         exitpriority=50)
    try:
        p = polyproc.get_context("fork").Process(target=_proc_workers.exit_with, args=(0,))
        p.start()
        p.join(SHORT_TIMEOUT)
        assert 0 == p.exitcode
        assert not log.exists()
        assert mine.still_active()
    finally:
        mine.cancel()


def test_finalizers_run_at_interpreter_exit(tmp_path):
    """In the main process, atexit runs the finalizers, before children are joined for
    priorities >= 0 and after for the others."""
    log = tmp_path / "log"
    result = _python(f"""
        from tests import _proc_workers
        _proc_workers.register_finalizers({str(log)!r})
    """)
    assert 0 == result.returncode, result.stderr
    expected = ["p10-second", "p10-first", "exiting=True", "p1", "p0", "p-5"]
    assert expected == log.read_text().split()


def test_exit_sequence_is_logged():
    """With logging on, the exit sequence and each finalizer call are logged."""
    result = _python("""
        from polyproc import util
        util.log_to_stderr(util.SUBDEBUG)
        util.Finalize(None, print, args=("finalized",), exitpriority=1)
    """)
    assert 0 == result.returncode, result.stderr
    assert "finalized" == result.stdout.strip()
    assert "process shutting down" in result.stderr
    assert "finalizer calling <built-in function print>" in result.stderr


# -- util: after fork, fork-aware objects, temp dir ------------------------------------------


def test_register_after_fork_runs_in_a_forked_child():
    """Hooks run in the child for live objects; ForkAwareLocal is empty there and a held
    ForkAwareThreadLock is free."""
    keeper = _proc_workers.Keeper()
    util.register_after_fork(keeper, _proc_workers.mark_forked)
    dead = _proc_workers.Keeper()
    util.register_after_fork(dead, _proc_workers.mark_forked)
    del dead
    gc.collect()
    local = util.ForkAwareLocal()
    local.value = 1
    lock = util.ForkAwareThreadLock()
    reader, writer = polyproc.Pipe(duplex=False)
    with lock:
        p = polyproc.get_context("fork").Process(
            target=_proc_workers.report_after_fork, args=(writer, keeper, local, lock)
        )
        p.start()
        assert reader.poll(SHORT_TIMEOUT)
        report = reader.recv()
    p.join(SHORT_TIMEOUT)
    assert report["forked_in"] == report["pid"] == p.pid
    assert {} == report["local"]
    assert report["lock_free"]
    assert keeper.forked_in is None  # never in the parent
    assert 1 == local.value
    assert isinstance(pickle.loads(pickle.dumps(local)), util.ForkAwareLocal)


@pytest.mark.parametrize("method", START_METHODS)
def test_temp_dir_is_removed_at_child_exit(method):
    """get_temp_dir() makes a directory the process removes at its exit."""
    reader, writer = polyproc.Pipe(duplex=False)
    p = polyproc.get_context(method).Process(target=_proc_workers.use_temp_dir, args=(writer,))
    p.start()
    assert reader.poll(SHORT_TIMEOUT)
    path = reader.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    assert os.path.basename(path).startswith("pymp-")
    assert not os.path.exists(path)


def test_temp_dir_is_removed_at_interpreter_exit():
    """The main process removes its temp dir at exit too."""
    result = _python("""
        import os
        from polyproc import util
        path = util.get_temp_dir()
        open(os.path.join(path, "f"), "w").close()
        print(path)
    """)
    assert 0 == result.returncode, result.stderr
    path = result.stdout.strip()
    assert path and not os.path.exists(path)


# -- util: descriptors -----------------------------------------------------------------------


def test_close_all_fds_except_and_spawnv_passfds():
    """In a fresh interpreter: close_all_fds_except keeps only the named descriptors;
    spawnv_passfds hands a descriptor to a program under the same number."""
    result = _python("""
        import os, sys
        from polyproc import util
        keep_r, keep_w = os.pipe()
        gone_r, gone_w = os.pipe()
        util.close_all_fds_except([0, 1, 2, keep_r, keep_w])
        try:
            os.fstat(gone_r)
        except OSError:
            pass
        else:
            raise SystemExit("not closed")
        code = f"import os; os.write({keep_w}, b'from the child')"
        pid = util.spawnv_passfds(sys.executable, [sys.executable, "-c", code], [keep_w])
        os.close(keep_w)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        print(os.read(keep_r, 100).decode())
    """)
    assert 0 == result.returncode, result.stderr
    assert "from the child" == result.stdout.strip()
    with pytest.raises(ValueError, match="fd too large"):
        util.close_all_fds_except([util.MAXFD])


def test_abstract_socket_helpers():
    """Linux has the abstract namespace; addresses starting with NUL are in it."""
    assert util.abstract_sockets_supported
    assert util.is_abstract_socket_namespace("\0name")
    assert util.is_abstract_socket_namespace(b"\0name")
    assert not util.is_abstract_socket_namespace("/tmp/sock")
    assert not util.is_abstract_socket_namespace(None)


# -- spawn ---------------------------------------------------------------------------------------


def test_preparation_data_round_trip(tmp_path):
    """prepare(get_preparation_data(...)) in a fresh interpreter gives it the parent's
    name, directory, argv, path and main module (run as __mp_main__)."""
    script = tmp_path / "main_script.py"
    script.write_text("MARK = 42\nif __name__ == '__main__':\n    raise SystemExit('ran')\n")
    data = spawn.get_preparation_data("prepared-child")
    assert "prepared-child" == data["name"]
    data.update(dir=str(tmp_path), sys_argv=["prog", "arg"], main_path=str(script))
    data.pop("main_name", None)
    data["sys_path"] = [*data["sys_path"], str(tmp_path / "extra")]
    result = _run_prepare(data)
    assert "prepared-child" == result["name"]
    assert bytes(polyproc.current_process().authkey) == result["authkey"]
    assert str(tmp_path) == result["cwd"]
    assert ["prog", "arg"] == result["argv"]
    assert str(tmp_path / "extra") in result["path"]
    assert ("__mp_main__", 42, True) == result["main"]
    assert data["start_method"] == result["start_method"]


def _run_prepare(data: dict[str, object]) -> dict[str, object]:
    code = textwrap.dedent("""
        import os, pickle, sys
        import polyproc
        from polyproc import spawn
        spawn.prepare(pickle.load(sys.stdin.buffer))
        main = sys.modules["__main__"]
        sys.stdout.write(pickle.dumps({
            "name": polyproc.current_process().name,
            "authkey": bytes(polyproc.current_process().authkey),
            "cwd": os.getcwd(), "argv": sys.argv, "path": sys.path,
            "main": (main.__name__, main.MARK, sys.modules["__mp_main__"] is main),
            "start_method": polyproc.get_start_method(allow_none=True),
        }).hex())
    """)
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(data), capture_output=True,
        timeout=SHORT_TIMEOUT, env=env, cwd=ROOT,
    )
    assert 0 == result.returncode, result.stderr.decode()
    return pickle.loads(bytes.fromhex(result.stdout.decode()))  # type: ignore[no-any-return]


def test_get_command_line_is_what_the_spawn_launcher_runs():
    """A child started by hand from get_command_line() and the launcher's payload runs."""
    from polyproc._os._spawn import spawn_executable
    from polyproc._process._launch import PAYLOAD_LENGTH, encode_payload
    from polyproc._process._state import runtime

    p = polyproc.get_context("spawn").Process(target=_proc_workers.exit_with, args=(9,))
    payload, fds = encode_payload(p, with_preparation=True)
    payload_r, payload_w = os.pipe()
    report_r, report_w = os.pipe()
    argv = spawn.get_command_line(
        payload_fd=payload_r, report_fd=report_w, parent_handle=runtime.self_handle(),
        fds=fds, main_thread=False,
    )
    assert argv[: len(spawn.get_command_line())] == spawn.get_command_line()
    assert spawn.get_executable() == argv[0]
    try:
        pid = spawn_executable(argv, [payload_r, report_w, runtime.self_handle(), *fds])
        os.close(payload_r)
        os.close(report_w)
        with open(payload_w, "wb") as pipe:
            pipe.write(PAYLOAD_LENGTH.pack(len(payload)) + payload)
        _, status = os.waitpid(pid, 0)
        assert 9 == os.waitstatus_to_exitcode(status)
    finally:
        os.close(report_r)


def test_spawn_executable_and_argument_checks():
    """set_executable changes what spawn runs; spawn_main refuses the stdlib protocol."""
    original = spawn.get_executable()
    try:
        spawn.set_executable(os.fsencode(sys.executable))
        assert sys.executable == spawn.get_executable()
        spawn.set_executable(None)
        assert sys.executable == spawn.get_executable()
    finally:
        spawn.set_executable(original)
    assert not spawn.WINEXE and not spawn.WINSERVICE
    assert spawn.is_forking(["prog", "--multiprocessing-fork", "x=1"])
    assert not spawn.is_forking(["prog"])
    spawn.freeze_support()  # not a child: nothing happens
    with pytest.raises(RuntimeError, match="cannot apply"):
        spawn.spawn_main(pipe_handle=3)
    with pytest.raises(TypeError):
        spawn.get_command_line(pipe_handle=3)


def test_import_main_path_runs_a_script_as_mp_main(tmp_path):
    """import_main_path runs the script as __mp_main__ and aliases __main__ to it."""
    script = tmp_path / "other_main.py"
    script.write_text("VALUE = 'imported'\n")
    result = _python(f"""
        import sys
        from polyproc import spawn
        spawn.import_main_path({str(script)!r})
        main = sys.modules["__main__"]
        print(main.__name__, main.VALUE, sys.modules["__mp_main__"] is main)
    """)
    assert 0 == result.returncode, result.stderr
    assert "__mp_main__ imported True" == result.stdout.strip()


# -- forkserver ----------------------------------------------------------------------------------


def test_forkserver_ensure_running_starts_one_server():
    """ensure_running starts the server once; forkserver starts reuse it; after _stop a
    new one starts."""
    server = forkserver._forkserver
    forkserver.ensure_running()
    pid = server._forkserver_pid
    assert pid is not None
    forkserver.ensure_running()
    assert pid == server._forkserver_pid
    assert server._forkserver_address is not None
    p = polyproc.get_context("forkserver").Process(target=_proc_workers.exit_with, args=(0,))
    p.start()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    assert pid == server._forkserver_pid
    server._stop()
    assert server._forkserver_pid is None
    forkserver.ensure_running()
    assert server._forkserver_pid not in (None, pid)


def test_forkserver_module_surface():
    """Preload checks its argument; the stdlib-only pieces say clearly what they are."""
    assert isinstance(forkserver.MAXFDS_TO_SEND, int) and forkserver.MAXFDS_TO_SEND > 4
    assert forkserver.get_inherited_fds() is None
    with pytest.raises(TypeError):
        forkserver.set_forkserver_preload([1])  # type: ignore[list-item]
    with pytest.raises(NotImplementedError, match="Process"):
        forkserver.connect_to_new_process([])
    assert isinstance(forkserver._forkserver, forkserver.ForkServer)


def test_cleanup_tests_stops_the_fork_server_and_removes_the_temp_dir():
    """util._cleanup_tests, which suites written for the stdlib call at their end (in its
    own interpreter: it runs every finalizer of the process)."""
    code = textwrap.dedent("""
        import os
        from polyproc import forkserver, util
        forkserver.ensure_running()
        assert forkserver._forkserver._forkserver_pid is not None
        tempdir = util.get_temp_dir()
        util._cleanup_tests()
        assert forkserver._forkserver._forkserver_pid is None
        assert not os.path.exists(tempdir)
        assert util.get_temp_dir() != tempdir  # a fresh one on demand
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_process_module_has_what_stdlib_test_suites_reach_for():
    """process._dangling holds started processes; process._cleanup reaps finished ones."""
    from polyproc import process

    p = polyproc.get_context("fork").Process(target=_proc_workers.exit_with, args=(0,))
    p.start()
    assert p in process._dangling
    p.join(30)
    process._cleanup()
    assert p not in polyproc.active_children()
