"""``BaseProcess``: the multiprocessing process object and its life cycle.

States: *initial* (created) -> *started* (``start``) -> *finished* (exit code known) ->
*closed* (``close``). The start method is a strategy: ``start`` hands the process to the
launcher of its method and keeps the :class:`~._launch.ChildHandle` it returns; every
other method asks that handle.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping

from .._os import _log
from .._os._wait import wait_readable
from .._wire import _pickling
from .._wire._remote_error import unpack_exception
from ._state import default_start_method, runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AuthenticationString",
    "BaseProcess",
    "ParentProcess",
    "active_children",
    "current_process",
    "parent_process",
]

_BOOTSTRAP_ERROR = """
        An attempt has been made to start a new process before the
        current process has finished its bootstrapping phase.

        This probably means that you are not using fork to start your
        child processes and you have forgotten to use the proper idiom
        in the main module:

            if __name__ == '__main__':
                freeze_support()
                ...

        The "freeze_support()" line can be omitted if the program
        is not going to be frozen to produce an executable.

        To fix this issue, refer to the "Safe importing of main module"
        section in https://docs.python.org/3/library/multiprocessing.html
        """


class AuthenticationString(bytes):
    """The authkey: bytes that refuse to be pickled except to start a child process."""

    def __reduce__(self) -> Any:
        raise TypeError(
            "Pickling an AuthenticationString object is disallowed for security reasons"
        )

    def __repr__(self) -> str:
        # Never print the secret: error messages and logs show objects by their repr.
        return f"<AuthenticationString of {len(self)} bytes>"

    __str__ = __repr__


def _export_authkey(key: AuthenticationString, add_fd: Any) -> bytes:
    return bytes(key)


def _import_authkey(state: bytes, fds: list[int]) -> AuthenticationString:
    return AuthenticationString(state)


_pickling.register_transfer(AuthenticationString, _export_authkey, _import_authkey)


class BaseProcess:
    """A process running *target(\\*args, \\*\\*kwargs)*, or :meth:`run` of a subclass.

    Mirrors ``multiprocessing.Process``; see the standard documentation for each method.
    polyproc adds :attr:`exception`.
    """

    # The start method; None means "the default context's method at start() time".
    _start_method: str | None = None

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        if group is not None:
            raise ValueError("group argument must be None for now")
        parent = runtime.current
        count = next(runtime.counter)
        self._identity: tuple[int, ...] = (*parent._identity, count)
        self._config: dict[str, Any] = parent._config.copy()
        self._parent_pid = os.getpid()
        self._parent_name: str = parent.name
        self._handle: Any = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs is not None else {}
        self._name = name or (
            type(self).__name__ + "-" + ":".join(str(i) for i in self._identity)
        )
        if daemon is not None:
            self.daemon = daemon
        self._exception: BaseException | None = None
        self._report_read = False
        self._inherited: dict[str, Any] = {}

    # -- the work ------------------------------------------------------------------
    def run(self) -> None:
        """The process's activity: calls *target*; override it in a subclass."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        """Start the process's activity in a new process.

        Raises:
            ValueError: the process object is closed.
            ProcessError (an ``AssertionError`` too): already started, created by another
                process, or a daemonic process tries to have children.
            RuntimeError: called while a spawned child imports its main module, i.e. the
                script lacks the ``if __name__ == '__main__':`` guard.
            SerializationError: under spawn or forkserver, the target or an argument
                cannot be pickled; the message names it. No process was started.
        """
        self._check_closed()
        if self._handle is not None:
            raise _StateError("cannot start a process twice")
        if self._parent_pid != os.getpid():
            raise _StateError("can only start a process object created by current process")
        if runtime.current._config.get("daemon"):
            raise _StateError("daemonic processes are not allowed to have children")
        if runtime.bootstrapping:
            raise RuntimeError(_BOOTSTRAP_ERROR)
        _reap_finished_children()
        method = self._start_method
        if method is None:  # the default context: fixed by the first start, as in the stdlib
            method = runtime.start_method = runtime.start_method or default_start_method()
        self._before_launch(runtime.start_method)
        me = threading.get_ident()
        with _launches.changed:
            _launches.threads[me] = _launches.threads.get(me, 0) + 1
        try:
            self._handle = runtime.launchers[method].launch(self)
            # Drop our references: the child has its own copies now (as the stdlib does).
            del self._target, self._args, self._kwargs
            runtime.children.add(self)
            dangling.add(self)
        finally:
            with _launches.changed:
                _launches.threads[me] -= 1
                if not _launches.threads[me]:
                    del _launches.threads[me]
                _launches.changed.notify_all()

    def _before_launch(self, start_method: str | None) -> None:
        """What every launch needs first (start(), and the public Popen classes)."""
        # What the child inherits of our settings, whichever method starts it.
        self._inherited = {"start_method": start_method, "log": _log.inherited_settings()}
        # Text printed before start() comes before the child's, and a forked child does
        # not print it a second time: flush, whatever the method (as the stdlib does).
        flush_std_streams()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the process ends, or until *timeout* seconds pass.

        Returns ``None`` either way; check :attr:`exitcode` or :meth:`is_alive`.
        """
        self._check_closed()
        if self._parent_pid != os.getpid():
            raise _StateError("can only join a child process")
        if self._handle is None:
            raise _StateError("can only join a started process")
        if self._handle.wait(timeout) is not None:
            runtime.children.discard(self)

    def is_alive(self) -> bool:
        """Whether the process has started and not yet ended."""
        self._check_closed()
        if self is runtime.current:
            return True
        if self._parent_pid != os.getpid():
            raise _StateError("can only test a child process")
        if self._handle is None:
            return False
        if self._handle.poll() is None:
            return True
        runtime.children.discard(self)
        return False

    def terminate(self) -> None:
        """Send SIGTERM to the process."""
        self._check_closed()
        if self._handle is not None:
            self._handle.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the process."""
        self._check_closed()
        if self._handle is not None:
            self._handle.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the process's resources; most methods then raise ``ValueError``.

        Raises:
            ValueError: the process is still running.
        """
        if self._handle is not None:
            if self._handle.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            self._read_report()
            self._handle.close()
            self._handle = None
            runtime.children.discard(self)
        self._closed = True

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    # -- attributes ----------------------------------------------------------------
    @property
    def name(self) -> str:
        """The process's name, for logs and reprs; not unique."""
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError("name must be a string")
        self._name = name

    @property
    def daemon(self) -> bool:
        """Whether the process is daemonic: terminated when its parent exits."""
        return bool(self._config.get("daemon", False))

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        if self._handle is not None:
            raise _StateError("process has already started")
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        """The secret used to authenticate connections; inherited from the parent."""
        return self._config["authkey"]  # type: ignore[no-any-return]

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = AuthenticationString(authkey)

    @property
    def exitcode(self) -> int | None:
        """``None`` while running, else the exit code; ``-N`` means killed by signal N."""
        self._check_closed()
        if self._handle is None:
            return None
        return self._handle.poll()  # type: ignore[no-any-return]

    @property
    def ident(self) -> int | None:
        """The process id, or ``None`` before it starts."""
        self._check_closed()
        if self is runtime.current:
            return os.getpid()
        return self._handle.pid if self._handle is not None else None

    pid = ident

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes readable when the process ends (for ``wait``).

        Raises:
            ValueError: the process has not started.
        """
        self._check_closed()
        if self._handle is None:
            raise ValueError("process not started") from None
        return self._handle.sentinel  # type: ignore[no-any-return]

    @property
    def exception(self) -> BaseException | None:
        """The exception the target raised in the child, or ``None``.

        A polyproc extension. ``None`` while the process runs, if it succeeded, or if it
        ended by ``sys.exit`` or a signal. The exception carries the child's traceback as
        a :class:`~polyproc.exceptions.RemoteTraceback` ``__cause__``; one that could not
        be pickled arrives as a :class:`~polyproc.exceptions.RemoteError`.
        """
        if self._handle is not None and self._handle.poll() is not None:
            self._read_report()
        return self._exception

    def _read_report(self) -> None:
        if self._report_read or self._handle is None:
            return
        self._report_read = True
        data = self._handle.read_report()
        if data:
            self._exception = unpack_exception(data)

    def __repr__(self) -> str:
        exitcode = None
        if self is runtime.current:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._handle is None:
            status = "initial"
        else:
            exitcode = self._handle.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._handle is not None:
            info.append(f"pid={self._handle.pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            info.append(f"exitcode={_exitcode_name(exitcode)}")
        if self.daemon:
            info.append("daemon")
        return "<{}>".format(" ".join(info))


# -N -> "-SIGNAME", built as the standard library builds it (SIGPOLL, not SIGIO, for 29).
_EXITCODE_NAMES = {
    -signum: f"-{name}"
    for name, signum in list(signal.__dict__.items())
    if name[:3] == "SIG" and "_" not in name
}


def _exitcode_name(code: int) -> str:
    return _EXITCODE_NAMES.get(code, str(code))


class _Launches:
    """The threads of this process inside ``start()``, for the exit sequence to wait on.

    A program may start a process from a (daemon) thread while its main thread exits:
    the child is not a child of ours yet (not joined, not terminated) until ``start()``
    returns, and under spawn its payload is still being written.
    """

    def __init__(self) -> None:
        self.changed = threading.Condition(threading.Lock())
        self.threads: dict[int, int] = {}  # thread ident -> starts in progress

    def wait_for_others(self, timeout: float) -> None:
        me = threading.get_ident()
        with self.changed:
            self.changed.wait_for(lambda: not set(self.threads) - {me}, timeout)


_launches = _Launches()


def _reset_launches() -> None:
    global _launches
    _launches = _Launches()  # a forked child: its parent's other threads are not here


os.register_at_fork(after_in_child=_reset_launches)

#: How long the exit sequence waits for starts in progress in other threads.
LAUNCH_GRACE_S = 10.0


def flush_std_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``, ignoring closed or missing streams."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


class _StateError(AssertionError):
    """Misuse of a process object's life cycle (``AssertionError`` as in multiprocessing)."""


class _MainProcess(BaseProcess):
    """The process object of the interpreter that was not started by polyproc."""

    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None  # type: ignore[assignment]
        self._parent_name = ""
        self._handle = None
        self._closed = False
        self._config = {"authkey": AuthenticationString(os.urandom(32)), "semprefix": "/mp"}
        self._exception = None
        self._report_read = False

    def close(self) -> None:
        pass


class ParentProcess(BaseProcess):
    """Read-only view of the parent, returned by ``parent_process()`` in a child."""

    def __init__(self, name: str, pid: int, sentinel: int) -> None:
        self._identity = ()
        self._name = name
        self._pid = pid
        self._parent_pid = None  # type: ignore[assignment]
        self._handle = None
        self._sentinel_fd = sentinel
        self._closed = False
        self._config = {}
        self._exception = None
        self._report_read = False

    def is_alive(self) -> bool:
        """Whether the parent is still running."""
        return not wait_readable([self._sentinel_fd], 0)

    @property
    def ident(self) -> int | None:
        """The parent's process id."""
        return self._pid

    pid = ident

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes readable when the parent ends."""
        return self._sentinel_fd

    @property
    def exitcode(self) -> int | None:
        """Always ``None``: a child cannot learn its parent's exit code."""
        return None

    def join(self, timeout: float | None = None) -> None:
        """Wait until the parent ends, or *timeout* seconds pass."""
        wait_readable([self._sentinel_fd], timeout)

    def __repr__(self) -> str:
        # The standard library's repr of its _ParentProcess (its status is "unknown").
        return f"<_ParentProcess name={self._name!r} parent=None unknown>"


def current_process() -> BaseProcess:
    """The process object of the calling process."""
    return runtime.current  # type: ignore[no-any-return]


def parent_process() -> BaseProcess | None:
    """The parent's process object in a child started by polyproc, else ``None``."""
    return runtime.parent  # type: ignore[no-any-return]


def _reap_finished_children() -> None:
    for child in list(runtime.children):
        handle = child._handle
        if handle is not None and handle.poll() is not None:
            runtime.children.discard(child)


#: Every process started here and still referenced (test suites written for the stdlib
#: compare it before and after a test to find processes left running).
dangling: weakref.WeakSet[BaseProcess] = weakref.WeakSet()


def cleanup() -> None:
    """Reap the children that have finished (``multiprocessing.process._cleanup``)."""
    _reap_finished_children()


def active_children() -> list[BaseProcess]:
    """The children of this process still alive; finished ones are reaped as a side effect."""
    _reap_finished_children()
    return list(runtime.children)


def exit_children() -> None:
    """What multiprocessing does at exit: terminate daemonic children, join the others.

    A start in progress in another thread is waited for first, so that its child is
    terminated or joined too instead of being left half-started.
    """
    _launches.wait_for_others(LAUNCH_GRACE_S)
    for child in active_children():
        if child.daemon:
            _log.info("calling terminate() for daemon %s", child.name)
            child.terminate()
    for child in active_children():
        _log.info("calling join() for process %s", child.name)
        child.join()


def _current_name() -> str:
    return runtime.current.name  # type: ignore[no-any-return]


if runtime.current is None:
    runtime.current = _MainProcess()
    atexit.register(exit_children)
    _log.set_process_name_source(_current_name)
