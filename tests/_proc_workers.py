"""Functions and classes for tests/test_stdlib_modules_proc.py that run in child processes.

Module-level in an importable module, so that spawn and the fork server find them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from polyproc import context, util


def exit_with(code: int) -> None:
    """Leave with exit code *code*."""
    sys.exit(code)


def wait_for_message(conn: Any) -> None:
    """Block until something arrives on *conn* (or it closes)."""
    try:
        conn.recv()
    except EOFError:
        pass


def append_line(path: str, text: str) -> None:
    """Append *text* and a newline to the file *path*."""
    with open(path, "a") as f:
        f.write(text + "\n")


class Keeper:
    """An object to hang finalizers and after-fork hooks on."""

    def __init__(self) -> None:
        self.forked_in: int | None = None


_kept: list[Any] = []


def register_finalizers(path: str, exit_code: int = 0) -> None:
    """Register finalizers of several priorities that log to *path*, then exit."""
    util.Finalize(None, append_line, args=(path, "p1"), exitpriority=1)
    util.Finalize(None, append_line, args=(path, "p10-first"), exitpriority=10)
    util.Finalize(None, append_line, args=(path, "p10-second"), exitpriority=10)
    util.Finalize(None, append_line, args=(path, "p-5"), exitpriority=-5)
    util.Finalize(None, append_line, kwargs={"path": path, "text": "p0"}, exitpriority=0)
    keeper = Keeper()
    _kept.append(keeper)  # alive at exit: a finalizer without priority must not run
    util.Finalize(keeper, append_line, args=(path, "no-priority"))
    util.Finalize(None, _record_exiting, args=(path,), exitpriority=5)
    if exit_code:
        sys.exit(exit_code)


def _record_exiting(path: str) -> None:
    append_line(path, f"exiting={util.is_exiting()}")


def report_after_fork(conn: Any, keeper: Keeper, local: Any, lock: Any) -> None:
    """Send what the after-fork hooks did to objects inherited from the parent."""
    acquired = lock.acquire(timeout=5)
    if acquired:
        lock.release()
    conn.send(
        {
            "forked_in": keeper.forked_in,
            "pid": os.getpid(),
            "local": dict(vars(local)),
            "lock_free": acquired,
        }
    )


def mark_forked(keeper: Keeper) -> None:
    """An after-fork hook: record the pid of the child it runs in."""
    keeper.forked_in = os.getpid()


def use_temp_dir(conn: Any) -> None:
    """Create this process's temp dir, put a file in it, send its path."""
    path = util.get_temp_dir()
    assert path == util.get_temp_dir()
    append_line(os.path.join(path, "file"), "x")
    conn.send(path)


class FdCarrier:
    """Holds a descriptor; pickles to a child being started by duplicating it for it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> Any:
        context.assert_spawning(self)
        popen = context.get_spawning_popen()
        return _rebuild_carrier, (popen.DupFd(popen.duplicate_for_child(self.fd)),)


def _rebuild_carrier(dupfd: Any) -> FdCarrier:
    return FdCarrier(dupfd.detach())


def write_through(carrier: FdCarrier, data: bytes) -> None:
    """Write *data* to the descriptor the carrier brought along."""
    os.write(carrier.fd, data)
    os.close(carrier.fd)
