"""Process handles: open a pidfd, reap a child, describe how a process ended."""

from __future__ import annotations

import errno
import os
import signal

__all__ = ["describe_exit", "open_process_handle", "reap", "send_signal"]


def open_process_handle(pid: int) -> int:
    """Return a pidfd for *pid*: a descriptor that becomes readable when *pid* ends.

    Works for any process of the same user, not only children, which is how a child
    watches its parent and how a forkserver child is watched. The descriptor is
    close-on-exec.

    Raises:
        ProcessLookupError: *pid* does not exist (it has already been reaped).
        OSError: the kernel has no pidfd support (Linux older than 5.3).
    """
    return os.pidfd_open(pid)


def reap(pid: int, *, block: bool) -> int | None:
    """Collect the exit status of the child *pid*.

    Returns the multiprocessing-style exit code (negative for a signal), or ``None``
    if the child is still running and *block* is false. A child reaped by someone else
    (``ECHILD``) is reported as exit code 255, since its status is lost.
    """
    flags = 0 if block else os.WNOHANG
    while True:
        try:
            got, status = os.waitpid(pid, flags)
        except ChildProcessError:
            return 255
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if got == 0:
            return None
        return os.waitstatus_to_exitcode(status)


def send_signal(pid: int, signum: int) -> bool:
    """Send *signum* to *pid*; return False if the process is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except OSError as exc:  # pragma: no cover - EPERM on a recycled pid
        if exc.errno == errno.EPERM:
            return False
        raise
    return True


_LIKELY_CAUSE = {
    signal.SIGKILL: "killed with SIGKILL: by the OOM killer when memory runs out, or kill -9",
    signal.SIGSEGV: "a segmentation fault, usually a crash in native code",
    signal.SIGBUS: "a bus error, often a truncated memory-mapped file or full /dev/shm",
    signal.SIGABRT: "aborted, usually a failed assertion in native code",
    signal.SIGTERM: "terminated with SIGTERM",
    signal.SIGINT: "interrupted with SIGINT (Ctrl-C)",
    signal.SIGFPE: "a floating-point exception in native code",
}


def describe_exit(exitcode: int | None) -> str:
    """Say in words how a process ended, from a multiprocessing-style exit code."""
    if exitcode is None:
        return "is still running"
    if exitcode == 0:
        return "exited normally (exit code 0)"
    if exitcode > 0:
        return f"exited with exit code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"was killed by signal {-exitcode}"
    cause = _LIKELY_CAUSE.get(sig)
    return f"was killed by {sig.name}" + (f" ({cause})" if cause else "")
