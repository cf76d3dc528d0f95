"""The start methods as launcher objects, and the handle a launch returns.

A launcher turns a ``Process`` object into a running child and returns a
:class:`ChildHandle`; ``Process`` never needs to know which method started it. The
fork server launcher lives in :mod:`._forkserver`; it is registered here with the others.
"""

from __future__ import annotations

import io
import os
import pickle
import signal
import struct
import sys
import threading

from .._os._pipes import read_available
from .._os._procs import reap
from .._os._spawn import interpreter_flags, spawn_executable
from .._os._threads import is_internal, program_threads
from .._os._wait import wait_readable
from .._wire import _pickling
from . import _forkserver, _prepare
from ._child import run_child
from ._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol

    class ChildHandle(Protocol):
        """What a launcher returns: the parent's grip on one running child."""

        pid: int
        sentinel: int

        def poll(self) -> int | None:
            """The exit code if the child has ended, else ``None``; never blocks."""

        def wait(self, timeout: float | None) -> int | None:
            """Wait up to *timeout* seconds for the end; the exit code, or ``None``."""

        def send_signal(self, signum: int) -> None:
            """Signal the child unless it has already ended."""

        def read_report(self) -> bytes | None:
            """The child's exception report, if it wrote one (call after it ended)."""

        def close(self) -> None:
            """Release the descriptors."""

__all__ = ["PAYLOAD_LENGTH", "ChildHandle", "DirectChild", "ForkLauncher", "SpawnLauncher"]


class DirectChild:
    """A child of this very process (fork, spawn): reaped with waitpid, watched by pidfd."""

    def __init__(self, pid: int, report_fd: int) -> None:
        self.pid = pid
        self.sentinel = os.pidfd_open(pid)
        self._report_fd: int | None = report_fd
        self._returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        # Never blocks: if another thread is inside a blocking wait(), report "running"
        # until that wait has collected the status.
        if self._returncode is None and self._lock.acquire(blocking=False):
            try:
                if self._returncode is None:
                    self._returncode = reap(self.pid, block=False)
            finally:
                self._lock.release()
        return self._returncode

    def wait(self, timeout: float | None) -> int | None:
        if self._returncode is None:
            if timeout is None:
                with self._lock:
                    if self._returncode is None:
                        self._returncode = reap(self.pid, block=True)
            elif not wait_readable([self.sentinel], timeout):
                return None
            return self.poll()
        return self._returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self.sentinel, signum)
            except ProcessLookupError:
                pass

    def read_report(self) -> bytes | None:
        return read_available(self._report_fd) or None if self._report_fd is not None else None

    def close(self, _close: Callable[[int], None] = os.close) -> None:
        # os.close bound at definition: __del__ may run at interpreter exit, after the
        # os module's globals were cleared.
        sentinel, self.sentinel = self.sentinel, -1
        if sentinel >= 0:
            _close(sentinel)
        if self._report_fd is not None:
            _close(self._report_fd)
            self._report_fd = None

    def __del__(self) -> None:
        # A Process dropped without close(): its descriptors go with it (as the stdlib's
        # Popen finalizer does), or a long-lived parent runs out of them.
        if getattr(self, "sentinel", -1) >= 0:
            self.close()


class ForkLauncher:
    """``fork``: the child is a copy of the parent; nothing is pickled."""

    name = "fork"

    def launch(self, process: Any) -> DirectChild:
        parent_handle = runtime.self_handle()
        # The parent-death signal follows the forking thread: only the main thread's
        # children may use it (see _os/_lifeline.c).
        by_kernel = threading.current_thread() is threading.main_thread()
        _warn_if_forking_with_threads()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            exitcode = 1
            try:
                os.close(report_r)
                exitcode = run_child(
                    process,
                    report_fd=report_w,
                    parent_handle=parent_handle,
                    watch_by_kernel=by_kernel,
                )
            finally:
                os._exit(exitcode)
        os.close(report_w)
        return DirectChild(pid, report_r)


def _warn_if_forking_with_threads() -> None:
    """Warn, as Python 3.12 and later do, when the program forks with other threads alive.

    A forked child gets a copy of every lock as it was, but only the forking thread: a
    lock another thread held at that moment stays held forever in the child. polyproc's
    own helper threads are written for this and are not counted; the warning names the
    program's threads, so the user can tell whether one of them may hold a lock.
    """
    if is_internal(threading.current_thread()):
        return  # polyproc's own thread forks (a pool replacing a worker): its decision
    threads = program_threads()
    if not threads:
        return
    import warnings

    names = ", ".join(repr(thread.name) for thread in threads)
    level, frame = 1, sys._getframe(0)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "polyproc."
    ):
        frame, level = frame.f_back, level + 1  # point at the program's own call
    warnings.warn(
        f"This process (pid={os.getpid()}) is multi-threaded (other threads: {names}); "
        "fork() copies the locks those threads may hold, so the child may deadlock on "
        "them. Start processes with the 'forkserver' or 'spawn' method instead "
        "(polyproc.set_start_method('forkserver') or get_context('forkserver')).",
        DeprecationWarning,
        stacklevel=level,
    )


SPAWN_ENTRY = "from polyproc._process._spawn_main import main; main()"
#: The header of a spawn payload: its length in bytes.
PAYLOAD_LENGTH = struct.Struct("!Q")


class SpawnLauncher:
    """``spawn``: a fresh interpreter that imports the main module and unpickles the process.

    Everything is pickled before the child exists, so an unpicklable target or argument
    raises in ``start()`` and no process is left behind.
    """

    name = "spawn"

    def launch(self, process: Any) -> DirectChild:
        payload, fds = encode_payload(process, with_preparation=True)
        parent_handle = runtime.self_handle()
        payload_r, payload_w = os.pipe()
        report_r, report_w = os.pipe()
        argv = [
            runtime.executable,
            *interpreter_flags(),
            "-c",
            SPAWN_ENTRY,
            str(payload_r),
            str(report_w),
            str(parent_handle),
            ",".join(map(str, fds)),
            # Whether the child may rely on the parent-death signal (see ForkLauncher).
            "main-thread" if threading.current_thread() is threading.main_thread() else "thread",
        ]
        try:
            pid = spawn_executable(argv, [payload_r, report_w, parent_handle, *fds])
        except BaseException:
            for fd in (payload_r, payload_w, report_r, report_w):
                os.close(fd)
            raise
        os.close(payload_r)
        os.close(report_w)
        child = DirectChild(pid, report_r)
        try:
            with open(payload_w, "wb", closefd=True) as pipe:
                # Length first: a child whose parent dies mid-write (os._exit in another
                # thread, a signal) sees a short payload and leaves quietly.
                pipe.write(PAYLOAD_LENGTH.pack(len(payload)))
                pipe.write(payload)
        except BrokenPipeError:
            pass  # the child died before reading; its exit code tells the story
        return child


def encode_payload(process: Any, *, with_preparation: bool) -> tuple[bytes, list[int]]:
    """Pickle what a child needs (preparation data, then the process object).

    Returns the bytes and the descriptors they refer to, in transfer order.

    Raises:
        SerializationError: the process, its target or an argument cannot be pickled.
    """
    head = b""
    if with_preparation:
        data = _prepare.collect(process)
        if "main_path" not in data and "main_name" not in data:
            main_path = _main_path_at_import()
            if main_path is not None:
                data["main_path"] = main_path
        head = pickle.dumps(data, _pickling.PROTOCOL)
    body, fds = _pickling.dumps_for_child(process, context=f"{type(process).__name__}.start")
    return head + body, fds


# Python deletes __main__.__file__ once the script has run, but a daemon thread may still
# start a child while the interpreter exits: remember where the main module came from.
_MAIN_AT_IMPORT = sys.modules.get("__main__")
_MAIN_FILE_AT_IMPORT: str | None = getattr(_MAIN_AT_IMPORT, "__file__", None)
if _MAIN_FILE_AT_IMPORT is not None:
    _MAIN_FILE_AT_IMPORT = os.path.abspath(_MAIN_FILE_AT_IMPORT)


def _main_path_at_import() -> str | None:
    """The main script's path if ``__main__`` is the script that ran and lost its
    ``__file__`` since polyproc was imported; else ``None``."""
    main = sys.modules.get("__main__")
    if (
        main is None
        or main is not _MAIN_AT_IMPORT
        or _MAIN_FILE_AT_IMPORT is None
        or hasattr(main, "__file__")
        or getattr(main, "__spec__", None) is not None
        or _MAIN_FILE_AT_IMPORT.endswith(("<stdin>", "<string>"))
    ):
        return None
    return _MAIN_FILE_AT_IMPORT


def decode_payload(
    data: bytes, fds: list[int], *, with_preparation: bool
) -> Any:
    """The child's side of :func:`encode_payload`: apply preparation, return the process."""
    stream = io.BytesIO(data)
    if with_preparation:
        _prepare.apply(pickle.load(stream))
    return _pickling.TransferUnpickler(stream, fds).load()


runtime.launchers.update(
    fork=ForkLauncher(),
    spawn=SpawnLauncher(),
    forkserver=_forkserver.ForkServerLauncher(),
)
