"""Whole programs run as a user runs them: main-module handling, guards, orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests._support import SHORT_TIMEOUT, START_METHODS, process_gone, wait_until


def _run_script(tmp_path, body: str, *args: str, **kwargs):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=SHORT_TIMEOUT,
        cwd=tmp_path,
        **kwargs,
    )


@pytest.mark.parametrize("method", START_METHODS)
def test_main_module_functions_and_classes(tmp_path, method):
    """A target defined in the main script runs; spawn re-imports it as __mp_main__."""
    result = _run_script(
        tmp_path,
        """
        import sys
        import polyproc as multiprocessing

        class Box:
            def __init__(self, v):
                self.v = v

        def f(conn, box):
            conn.send((__name__, box.v * 2))

        if __name__ == '__main__':
            ctx = multiprocessing.get_context(sys.argv[1])
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=f, args=(w, Box(21)))
            p.start()
            print(r.recv())
            p.join()
            print(p.exitcode)
        """,
        method,
    )
    assert 0 == result.returncode, result.stderr
    expected_name = "__main__" if method == "fork" else "__mp_main__"
    assert f"('{expected_name}', 42)\n0\n" == result.stdout


@pytest.mark.parametrize("method", START_METHODS)
def test_functions_of_a_main_without_a_file_travel_by_value(method):
    """Like a notebook: `python -c` has no main file, yet its functions run in children."""
    code = textwrap.dedent(
        """
        import sys
        import polyproc as multiprocessing
        def f(conn, x):
            conn.send(x * x)
        ctx = multiprocessing.get_context(sys.argv[1])
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=f, args=(w, 7))
        p.start()
        print(r.recv())
        p.join()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, method], capture_output=True, text=True, timeout=SHORT_TIMEOUT
    )
    assert 0 == result.returncode, result.stderr
    assert "49\n" == result.stdout


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_missing_main_guard_is_a_clear_error_not_a_fork_bomb(tmp_path, method):
    """Without `if __name__ == '__main__'`, the child refuses to start processes."""
    result = _run_script(
        tmp_path,
        """
        import sys
        import polyproc as multiprocessing
        ctx = multiprocessing.get_context(sys.argv[1])
        p = ctx.Process(target=print, args=("hi",))
        p.start()
        p.join()
        print("exitcode", p.exitcode)
        """,
        method,
    )
    assert "exitcode 1" in result.stdout
    assert "bootstrapping phase" in result.stderr
    assert result.stdout.count("exitcode") == 1  # the child did not run the script's body


@pytest.mark.parametrize("method", START_METHODS)
def test_no_orphans_when_the_parent_is_killed(tmp_path, method):
    """A child exits within 1 s of its parent dying by SIGKILL, and so does its own child."""
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, signal
            import polyproc as multiprocessing
            from tests import _workers
            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_workers.start_grandchild, args=(w, sys.argv[1]))
                p.start()
                grandchild = r.recv()
                print(p.pid, grandchild, flush=True)
                while True:
                    signal.pause()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    parent = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = parent.stdout.readline()
        child_pid, grandchild_pid = map(int, line.split())
        parent.kill()
        parent.wait(SHORT_TIMEOUT)
        killed_at = time.monotonic()

        # Each generation goes within 1 s of its own parent.
        assert wait_until(lambda: process_gone(child_pid), SHORT_TIMEOUT)
        child_gone_at = time.monotonic()
        assert child_gone_at - killed_at < 1.0
        assert wait_until(lambda: process_gone(grandchild_pid), SHORT_TIMEOUT)
        assert time.monotonic() - child_gone_at < 1.0
    finally:
        parent.kill()
        parent.wait(SHORT_TIMEOUT)
        for pid in (locals().get("child_pid"), locals().get("grandchild_pid")):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.parametrize("method", START_METHODS)
def test_no_pool_workers_survive_a_killed_parent(tmp_path, method):
    """SIGKILL the parent of a pool whose workers were started both by the constructor and,
    after a worker was killed, by the pool's manager thread: every worker goes."""
    script = tmp_path / "pool_parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, signal
            import polyproc as multiprocessing
            from tests import _workers
            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                pool = ctx.Pool(2)
                first = pool._engine.worker_pids()
                try:
                    pool.apply(_workers.kill_myself, (1,))
                except multiprocessing.WorkerLostError:
                    pass
                pool.map(_workers.square, range(4))  # the replacement is up and working
                print(*set(first) | set(pool._engine.worker_pids()), flush=True)
                while True:
                    signal.pause()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    parent = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env
    )
    pids: list[int] = []
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 3  # two first workers, one killed and replaced
        parent.kill()
        parent.wait(SHORT_TIMEOUT)
        assert wait_until(lambda: all(process_gone(pid) for pid in pids), 5)
    finally:
        parent.kill()
        parent.wait(SHORT_TIMEOUT)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_forkserver_preload_imports_modules_once_in_the_server(tmp_path):
    """set_forkserver_preload: the listed modules are loaded before any child asks."""
    result = _run_script(
        tmp_path,
        """
        import sys
        import polyproc as multiprocessing

        def f(conn):
            conn.send("xml.dom.minidom" in sys.modules)

        if __name__ == '__main__':
            multiprocessing.set_forkserver_preload(["__main__", "xml.dom.minidom"])
            ctx = multiprocessing.get_context("forkserver")
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=f, args=(w,))
            p.start()
            print(r.recv(), "xml.dom.minidom" in sys.modules)
            p.join()
        """,
    )
    assert 0 == result.returncode, result.stderr
    assert "True False\n" == result.stdout


def test_set_executable_is_used_by_spawn(tmp_path):
    """set_executable: spawn starts children with the given interpreter (here a wrapper)."""
    wrapper = tmp_path / "wrapped-python"
    wrapper.write_text(f'#!/bin/sh\nPOLYPROC_WRAPPED=yes exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    result = _run_script(
        tmp_path,
        """
        import os, sys
        import polyproc as multiprocessing

        def f(conn):
            conn.send(os.environ.get("POLYPROC_WRAPPED"))

        if __name__ == '__main__':
            multiprocessing.set_executable(sys.argv[1])
            ctx = multiprocessing.get_context("spawn")
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=f, args=(w,))
            p.start()
            print(r.recv())
            p.join()
        """,
        str(wrapper),
    )
    assert 0 == result.returncode, result.stderr
    assert "yes\n" == result.stdout


@pytest.mark.parametrize("method", START_METHODS)
def test_nothing_leaks_when_everything_is_killed(tmp_path, method):
    """SIGKILL the main process of an app using locks, values and queues: nothing remains.

    No process of ours survives, and /dev/shm holds nothing new: polyproc's shared state
    lives in memfds, which the kernel frees with their last user.
    """
    shm_before = set(os.listdir("/dev/shm"))
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, signal
            import polyproc as multiprocessing
            from tests import _workers
            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                lock, value, q = ctx.Lock(), ctx.Value("i", 0), ctx.Queue()
                r, w = ctx.Pipe(duplex=False)
                kids = [ctx.Process(target=_workers.hold_shared_state_and_block,
                                    args=(lock, value, q, w)) for _ in range(2)]
                for k in kids:
                    k.start()
                pids = [r.recv(), r.recv()]
                print(*pids, flush=True)
                while True:
                    signal.pause()
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    app = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = [int(pid) for pid in app.stdout.readline().split()]
        assert len(pids) == 2
        app.kill()
        app.wait(SHORT_TIMEOUT)

        assert wait_until(lambda: all(process_gone(pid) for pid in pids), 5)
        # The standard library's semaphores (sem.mp-*) belong to other programs on the
        # machine: polyproc never creates one (its locks live in memfd memory).
        new = {name for name in set(os.listdir("/dev/shm")) - shm_before
               if not name.startswith("sem.mp-")}
        assert new == set()
    finally:
        app.kill()
        app.wait(SHORT_TIMEOUT)


@pytest.mark.parametrize("method", START_METHODS)
def test_ctrl_c_during_map_returns_at_once_and_leaves_no_workers(tmp_path, method):
    """SIGINT in the parent while map() waits: control returns within 1 s, workers go."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import polyproc as multiprocessing
            from tests import _workers
            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                with ctx.Pool(2) as pool:
                    pids = set(pool.map(_workers.my_pid, range(20), chunksize=1))
                    try:
                        stuck = pool.map_async(_workers.block_forever, range(4))
                        print(*pids, flush=True)
                        stuck.get()
                    except KeyboardInterrupt:
                        print("interrupted", flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    app = subprocess.Popen(
        [sys.executable, str(script), method], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = [int(pid) for pid in app.stdout.readline().split()]
        assert pids
        app.send_signal(signal.SIGINT)
        sent_at = time.monotonic()
        assert "interrupted\n" == app.stdout.readline()
        app.wait(SHORT_TIMEOUT)
        assert time.monotonic() - sent_at < 1.0
        assert 0 == app.returncode
        assert wait_until(lambda: all(process_gone(pid) for pid in pids), 5)
    finally:
        app.kill()
        app.wait(SHORT_TIMEOUT)
