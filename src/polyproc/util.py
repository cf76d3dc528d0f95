"""multiprocessing.util: logging helpers, finalizers, after-fork hooks and small tools.

Logging is the standard library's: records go to the logger named ``"multiprocessing"``,
which has no handler until :func:`log_to_stderr` adds one, so by default nothing is
printed. The logging core lives in :mod:`polyproc._os._log` (the low layers log through
it); this module re-exports it.
"""

from __future__ import annotations

from ._os import _log
from ._os._log import (
    DEBUG,
    DEFAULT_LOGGING_FORMAT,
    INFO,
    LOGGER_NAME,
    NOTSET,
    SUBDEBUG,
    SUBWARNING,
    WARNING,
    debug,
    get_logger,
    info,
    log_to_stderr,
    sub_debug,
    sub_warning,
)

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False

__all__ = [
    "DEBUG",
    "DEFAULT_LOGGING_FORMAT",
    "INFO",
    "LOGGER_NAME",
    "NOTSET",
    "SUBDEBUG",
    "SUBWARNING",
    "WARNING",
    "debug",
    "get_logger",
    "info",
    "log_to_stderr",
    "sub_debug",
    "sub_warning",
]


def __getattr__(name: str) -> object:
    # multiprocessing.util._logger and _log_to_stderr are read by programs (and by the
    # standard library's spawn): they are live values of the logging core.
    if name in ("_logger", "_log_to_stderr"):
        return getattr(_log, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- finalizers, after-fork hooks, temporary directory, descriptors ----------------------
# The Finalize registry lives in the process layer (_process._finalize) because a child's
# bootstrap runs it and must not import this facade; this section re-exports it under the
# standard library's names and adds the helpers built on it.

import os as _os  # noqa: E402 - this section is appended after the logging part
import sys as _sys  # noqa: E402
import threading as _threading  # noqa: E402

from ._os._spawn import interpreter_flags as _interpreter_flags  # noqa: E402
from ._process import _child, _finalize  # noqa: E402
from ._process._state import runtime as _runtime  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ += [
    "MAXFD",
    "Finalize",
    "ForkAwareLocal",
    "ForkAwareThreadLock",
    "abstract_sockets_supported",
    "close_all_fds_except",
    "close_fds",
    "get_temp_dir",
    "is_abstract_socket_namespace",
    "is_exiting",
    "register_after_fork",
    "spawnv_passfds",
]

try:
    MAXFD = int(_os.sysconf("SC_OPEN_MAX"))
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    MAXFD = 256

Finalize = _finalize.Finalize
is_exiting = _finalize.is_exiting
register_after_fork = _finalize.register_after_fork
_run_finalizers = _finalize.run_finalizers
_exit_function = _finalize.exit_function
_run_after_forkers = _finalize.run_after_forkers
_finalizer_registry = _finalize.finalizer_registry
_finalizer_counter = _finalize.finalizer_counter
_afterfork_registry = _finalize.afterfork_registry
_afterfork_counter = _finalize.afterfork_counter
_args_from_interpreter_flags = _interpreter_flags
_flush_std_streams = _child.flush_std_streams

# Linux has the abstract socket namespace; polyproc's own sockets live there.
abstract_sockets_supported = True


def is_abstract_socket_namespace(address: str | bytes | None) -> bool:
    """Whether *address* names a socket in Linux's abstract namespace (leading NUL)."""
    if not address:
        return False
    if isinstance(address, bytes):
        return address[0] == 0
    if isinstance(address, str):
        return address[0] == "\0"
    raise TypeError(f"address type of {address!r} unrecognized")


def get_temp_dir() -> str:
    """A temporary directory for this process, created on first call, removed at its exit.

    As in multiprocessing, the directory is recorded in the current process's
    configuration, so children created afterwards share it (and leave it to the process
    that created it to remove).

    Raises:
        OSError: the directory cannot be created.
    """
    config = _runtime.current._config
    tempdir: str | None = config.get("tempdir")
    if tempdir is None:
        import tempfile  # on first use: children rarely need it

        tempdir = tempfile.mkdtemp(prefix="pymp-")
        # Priority -100: after every other finalizer, which may still use the directory.
        Finalize(None, _remove_temp_dir, args=(tempdir,), exitpriority=-100)
        config["tempdir"] = tempdir
    return tempdir


def _remove_temp_dir(tempdir: str) -> None:
    import shutil

    shutil.rmtree(tempdir, ignore_errors=True)
    config = _runtime.current._config
    if config.get("tempdir") == tempdir:
        config["tempdir"] = None


class ForkAwareThreadLock:
    """A thread lock that is fresh (unlocked) in every child polyproc starts.

    A child forked while another thread held the lock would otherwise inherit it held
    forever.
    """

    def __init__(self) -> None:
        self._reset()
        register_after_fork(self, ForkAwareThreadLock._reset)

    def _reset(self) -> None:
        self._lock = _threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        self._lock.release()


class ForkAwareLocal(_threading.local):
    """Thread-local storage that is empty in every child polyproc starts.

    Pickles as a new, empty instance.
    """

    def __init__(self) -> None:
        register_after_fork(self, _clear_local)

    def __reduce__(self) -> tuple[type[ForkAwareLocal], tuple[()]]:
        return type(self), ()


def _clear_local(local: ForkAwareLocal) -> None:
    local.__dict__.clear()


def close_all_fds_except(fds: Iterable[int]) -> None:
    """Close every descriptor of this process except *fds*.

    Raises:
        ValueError: a descriptor in *fds* is not below :data:`MAXFD`.
    """
    keep = sorted({fd for fd in fds if fd >= 0})
    if keep and keep[-1] >= MAXFD:
        raise ValueError(f"fd too large: {keep[-1]} (MAXFD is {MAXFD})")
    previous = -1
    for fd in [*keep, MAXFD]:
        # Never an empty range: closerange(n, n) may close everything (close_range(2)
        # is given n..n-1, which wraps around).
        if previous + 1 < fd:
            _os.closerange(previous + 1, fd)
        previous = fd


def close_fds(*fds: int) -> None:
    """Close each of *fds*.

    Raises:
        OSError: a descriptor is not open.
    """
    for fd in fds:
        _os.close(fd)


def spawnv_passfds(path: str | bytes, args: Sequence[str | bytes], passfds: Iterable[int]) -> int:
    """Start the program *path* with argument vector *args*, passing *passfds* under the same
    numbers (every other descriptor is close-on-exec). Returns the child's pid.

    Raises:
        OSError: the program cannot be started.
    """
    from ._os import _spawn

    fds = sorted(set(passfds))
    # The same lock as polyproc's own spawns: a descriptor is inheritable only for the
    # instant of this spawn, and no concurrent spawn of ours may see it.
    with _spawn._inherit_lock:
        for fd in fds:
            _os.set_inheritable(fd, True)
        try:
            return _os.posix_spawn(path, list(args), _os.environ)
        finally:
            for fd in fds:
                _os.set_inheritable(fd, False)


def _close_stdin() -> None:
    # As a child's bootstrap does: stdin reads from /dev/null.
    if _sys.stdin is None:
        return
    try:
        _sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        _sys.stdin = open(_os.devnull)  # noqa: SIM115 - replaces sys.stdin for good
    except OSError:
        pass


def _cleanup_tests() -> None:
    """Release what multiprocessing's tests leave behind (test suites written for the
    stdlib call it at their end): reap finished children, stop the fork server, run the
    finalizers (temporary directories), collect garbage."""
    import gc

    from . import forkserver
    from ._process._process import active_children

    active_children()  # reaps the children that have finished
    forkserver._forkserver._stop()
    _run_finalizers()
    gc.collect()
