"""What every child does, whatever started it: become itself, run, report, exit.

:func:`run_child` is shared by the three start methods. It installs the process object
as the current process, starts the parent watch (so no child outlives its parent), runs
the target with the standard library's exit-code rules, writes a report of an uncaught
exception to the parent, and joins what must be joined before the caller exits.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time

from .._os import _lifeline, _log
from .._os._wait import wait_readable
from .._wire._remote_error import pack_exception
from . import _finalize
from ._process import ParentProcess, exit_children, flush_std_streams
from ._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ORPHAN_GRACE_S",
    "flush_std_streams",
    "run_child",
    "watch_parent",
    "write_report",
]


# An orphan may notice its parent's death and finish within this; then it is killed.
ORPHAN_GRACE_S = 0.3

# POSIX timers are not inherited by fork: a forked child arms its own.
os.register_at_fork(after_in_child=_lifeline.disarm_after_fork)


def watch_parent(parent_handle: int, *, by_kernel: bool = False) -> None:
    """Kill this process (SIGKILL) within ORPHAN_GRACE_S of its parent's death.

    This is what keeps a child from being orphaned, even when its parent is killed with
    SIGKILL, while leaving it the time to notice and finish on its own (as
    ``parent_process().join()`` lets it). With *by_kernel* (a child its parent started
    from the parent's main thread) the kernel's parent-death signal starts the grace
    period, at no cost; otherwise a small thread waits on the parent's pidfd.
    """
    if by_kernel:
        _lifeline.arm(ORPHAN_GRACE_S)
        if wait_readable([parent_handle], 0):  # it died before the signal was armed
            _lifeline.start_grace()
        return

    def _watch() -> None:
        wait_readable([parent_handle], None)
        time.sleep(ORPHAN_GRACE_S)  # the grace period: a timer, not synchronisation
        os.kill(os.getpid(), signal.SIGKILL)

    # A bare thread: threading.Thread.start() waits for a handshake that would add a
    # quarter of a millisecond to every process start.
    _thread.start_new_thread(_watch, ())


def run_child(
    process: Any, *, report_fd: int, parent_handle: int, watch_by_kernel: bool = False
) -> int:
    """Run *process* as the current process; return its exit code.

    The caller exits with that code (``os._exit`` after a fork, ``sys.exit`` after a
    spawn). *report_fd* receives the pickled exception if the target raises one.
    """
    runtime.become_child(
        process, ParentProcess(process._parent_name, process._parent_pid, parent_handle)
    )
    _inherit_settings(process)
    watch_parent(parent_handle, by_kernel=watch_by_kernel)
    _stdin_to_devnull()
    _finalize.child_started()  # util.register_after_fork hooks; no inherited finalizers
    exitcode = 1
    try:
        try:
            _log.info("child process calling self.run()")
            try:
                process.run()
                exitcode = 0
            finally:
                # Before an uncaught exception is printed, as in the standard library.
                _finalize.child_exiting()  # util.Finalize callbacks with an exitpriority
        except SystemExit as exc:
            exitcode = _exit_code_of(exc)
        except BaseException as exc:
            exitcode = 1
            import traceback  # only the error path pays for it

            sys.stderr.write(f"Process {process.name}:\n")
            traceback.print_exc()
            write_report(report_fd, exc, process.name)
        finally:
            _join_non_daemon_threads()
            exit_children()
            _log.info("process exiting with exitcode %d", exitcode)
    finally:
        flush_std_streams()
        os.close(report_fd)
    return exitcode


def _inherit_settings(process: Any) -> None:
    """Take on the parent's default start method and log level, as multiprocessing does.

    A child started by a context defaults to that context's method.
    """
    inherited = getattr(process, "_inherited", {})
    method = process._start_method or inherited.get("start_method")
    if method is not None:
        runtime.start_method = method
    # Imports logging only if the parent had configured multiprocessing's logger.
    _log.apply_inherited(inherited.get("log", {}))
    # After a fork the main thread is another OS thread: refresh its native id.
    set_native_id = getattr(threading.main_thread(), "_set_native_id", None)
    if set_native_id is not None:
        set_native_id()


def _exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(str(code) + "\n")
    return 1


def write_report(report_fd: int, exc: BaseException, name: str) -> None:
    """Send the exception to the parent; never block, never raise."""
    try:
        data = pack_exception(exc, f"child process {name!r} (pid {os.getpid()})")
        os.set_blocking(report_fd, False)
        os.write(report_fd, data)
    except Exception:  # the report is a courtesy: the exit code already says "failed"
        pass


def _stdin_to_devnull() -> None:
    # As in multiprocessing: the child must not compete with its parent for stdin.
    if sys.stdin is not None:
        try:
            sys.stdin.close()
            sys.stdin = open(os.devnull)  # noqa: SIM115 - replaces sys.stdin for good
        except (OSError, ValueError):
            pass


def _join_non_daemon_threads() -> None:
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon and thread.is_alive():
            thread.join()
