"""Forking with other threads alive warns, as Python 3.12+ does, naming the threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import polyproc
from tests import _workers
from tests._support import SHORT_TIMEOUT


def _start_with_a_thread_alive(method: str) -> list[warnings.WarningMessage]:
    release = threading.Event()
    busy = threading.Thread(target=release.wait, name="busy-worker")
    busy.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            process = polyproc.get_context(method).Process(target=_workers.exit_abruptly,
                                                           args=(0,))
            process.start()
            process.join(SHORT_TIMEOUT)
    finally:
        release.set()
        busy.join(SHORT_TIMEOUT)
    return [w for w in caught if issubclass(w.category, DeprecationWarning)
            and "multi-threaded" in str(w.message)]


def test_fork_with_a_program_thread_alive_warns_and_names_it() -> None:
    caught = _start_with_a_thread_alive("fork")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "'busy-worker'" in message and "forkserver" in message
    assert caught[0].filename == __file__  # points at the program's call, not polyproc


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_fresh_interpreter_methods_do_not_warn(method: str) -> None:
    assert [] == _start_with_a_thread_alive(method)


def test_no_warning_without_other_threads_nor_for_polyproc_s_own() -> None:
    """Only polyproc's helper threads alive (a pool's manager thread, the fd server): no
    warning, and a pool replacing a killed worker from its own thread does not warn."""
    ctx = polyproc.get_context("fork")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ctx.Pool(2) as pool:
            assert [1, 4] == pool.map(_workers.square, [1, 2])
            with pytest.raises(polyproc.WorkerLostError):  # replaced from the pool's thread
                pool.apply_async(_workers.kill_this_process, (0,)).get(SHORT_TIMEOUT)
            assert [9] == pool.map(_workers.square, [3])
            process = ctx.Process(target=_workers.exit_abruptly, args=(0,))
            process.start()
            process.join(SHORT_TIMEOUT)
    assert [] == [w for w in caught if "multi-threaded" in str(w.message)]


def test_a_threaded_program_that_forks_exits_quietly() -> None:
    """The warning is the only thing printed: nothing at exit."""
    code = textwrap.dedent("""
        import threading, warnings, polyproc
        warnings.simplefilter("default")
        release = threading.Event()
        threading.Thread(target=release.wait, name="busy-worker").start()
        if __name__ == "__main__":
            p = polyproc.get_context("fork").Process(target=print, args=("child",))
            p.start(); p.join()
            release.set()
            with polyproc.get_context("fork").Pool(2) as pool:
                print(pool.map(abs, [-1]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["child", "[1]"]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "DeprecationWarning" in lines[0] and "'busy-worker'" in lines[0]
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
