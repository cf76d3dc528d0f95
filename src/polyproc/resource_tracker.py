"""Clean up named resources an application leaves behind, as in
:mod:`multiprocessing.resource_tracker`.

``register(name, rtype)`` asks for resource *name* of type *rtype* to be cleaned up when
the application ends without having called ``unregister(name, rtype)``. What that means
depends on the type:

``"shared_memory"``
    *name* is a POSIX shared memory name (``"/psm_1234"``). It goes to polyproc's shared
    memory tracker (``_shared._shm_tracker``), a small process that unlinks the segment
    when the application's main process ends, normally or killed by ``SIGKILL``. A
    :class:`~polyproc.shared_memory.SharedMemory` created by polyproc is registered already;
    ``unregister(shm._name, "shared_memory")`` keeps it alive past the application. If no
    such segment exists at the time of the call, the name is recorded as below instead.
``"semaphore"``, ``"noop"``
    Accepted and ignored: polyproc's semaphores live in shared memory the kernel frees
    with its last user, so there is no named semaphore to unlink.
any other key of :data:`_CLEANUP_FUNCS`
    (libraries add their own, e.g. ``"folder": shutil.rmtree``) Recorded in the calling
    process, and cleaned with ``_CLEANUP_FUNCS[rtype](name)`` when the *main* process
    exits normally (an ``atexit`` handler, which runs before polyproc joins the children
    the program left running: join those first). The tracker process cannot run the
    application's Python functions, so these are not cleaned after a ``SIGKILL``, and
    what a child process registers is not cleaned at all (a child's exit is not the
    application's end): register such resources in the main process.

A cleanup that fails, and a resource still registered at exit, are reported with a
warning, as the standard library's tracker reports them.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
import weakref
from collections.abc import Callable

from ._process._state import runtime
from ._shared import _shm_tracker

__all__ = ["ResourceTracker", "ensure_running", "getfd", "register", "unregister"]


def _noop(name: str) -> None:
    """Nothing to clean (``"noop"``, ``"semaphore"``)."""


def _unlink_shared_memory(name: str) -> None:
    """Unlink the POSIX shared memory segment *name*.

    Raises:
        FileNotFoundError: there is no such segment.
        OSError, ValueError: *name* is not a valid segment name.
    """
    file_name = _shm_tracker.check_name(name)
    os.unlink(os.path.join(os.fsencode(_shm_tracker.SHM_DIR), file_name))
    _shm_tracker.unregister(file_name)


# rtype -> function(name) that cleans up a resource of that type. Libraries add entries.
_CLEANUP_FUNCS: dict[str, Callable[[str], object]] = {
    "noop": _noop,
    "semaphore": _noop,  # polyproc has no named semaphores: nothing to unlink
    "shared_memory": _unlink_shared_memory,
}


class ResourceTracker:
    """Where this process's registrations go; see the module's documentation.

    The module-level functions are the methods of its one instance,
    ``_resource_tracker``. Every method may be called from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None  # the socket to the shared memory tracker, once known
        self._pid: int | None = None  # the standard library's tracker pid: never known here
        # (rtype, name) -> None, in registration order: what the main process cleans at exit.
        self._recorded: dict[tuple[str, str], None] = {}
        self._exit_hook_pid = -1
        _trackers.add(self)

    def ensure_running(self) -> None:
        """Start the shared memory tracker if this process cannot reach one.

        Never raises: tracking is a safety net, and a registration that cannot be tracked
        says so with a ``RuntimeWarning``.
        """
        _shm_tracker.ensure_running()
        self._fd = _shm_tracker.client_fd()

    def getfd(self) -> int:
        """The descriptor of the socket through which this process reaches its tracker,
        starting the tracker if needed.

        Raises:
            OSError: no tracker could be reached or started.
        """
        reached = _shm_tracker.ensure_running()
        fd = self._fd = _shm_tracker.client_fd()
        if fd is None or not reached:
            raise OSError("polyproc could not reach or start its resource tracker")
        return fd

    def register(self, name: str, rtype: str) -> None:
        """Have resource *name* of type *rtype* cleaned up if the application ends with
        it still registered (see the module's documentation for each type).

        Raises:
            ValueError: *rtype* is not a key of ``_CLEANUP_FUNCS``, or a
                ``"shared_memory"`` *name* holds a NUL character.
            OSError: a ``"shared_memory"`` *name* is not a valid segment name
                (``EINVAL``, ``ENAMETOOLONG``).
        """
        if rtype not in _CLEANUP_FUNCS:
            raise ValueError(
                f"cannot register {name!r} for cleanup: unknown resource type {rtype!r}"
                f" (known: {', '.join(sorted(_CLEANUP_FUNCS))})"
            )
        if _CLEANUP_FUNCS[rtype] is _noop:
            return
        if rtype == "shared_memory" and _CLEANUP_FUNCS[rtype] is _unlink_shared_memory:
            file_name = _shm_tracker.check_name(name)
            try:
                inode = os.stat(os.path.join(os.fsencode(_shm_tracker.SHM_DIR), file_name)).st_ino
            except FileNotFoundError:
                pass  # nothing the tracker could check against later: recorded here
            else:
                _shm_tracker.register(file_name, inode)
                self._fd = _shm_tracker.client_fd()
                return
        with self._lock:
            self._recorded[(rtype, name)] = None
            if self._exit_hook_pid != os.getpid():
                self._exit_hook_pid = os.getpid()
                atexit.register(self._clean_up_at_exit)

    def unregister(self, name: str, rtype: str) -> None:
        """Forget resource *name* of type *rtype*: it will not be cleaned up.

        Unregistering what is not registered does nothing. Never raises.
        """
        with self._lock:
            self._recorded.pop((rtype, name), None)
        if rtype == "shared_memory":
            try:
                _shm_tracker.unregister(_shm_tracker.check_name(name))
            except (OSError, ValueError):
                pass  # a name that cannot be a segment was never given to the tracker

    def _after_fork_in_child(self) -> None:
        # The parent's records stay the parent's: the child cleans none of them.
        self._lock = threading.Lock()
        self._recorded = {}

    def _clean_up_at_exit(self) -> None:
        """The atexit handler: clean what the main process left registered."""
        if runtime.parent is not None or self._exit_hook_pid != os.getpid():
            return  # a child process: its end is not the application's end
        with self._lock:
            left, self._recorded = list(self._recorded), {}
        by_type: dict[str, list[str]] = {}
        for rtype, name in left:
            by_type.setdefault(rtype, []).append(name)
        for rtype, names in by_type.items():
            cleanup = _CLEANUP_FUNCS.get(rtype, _noop)
            if cleanup is _noop:
                continue
            warnings.warn(
                f"resource_tracker: There appear to be {len(names)} leaked {rtype} objects"
                " to clean up at shutdown",
                UserWarning,
                stacklevel=1,
            )
            for name in names:
                try:
                    cleanup(name)
                except Exception as exc:  # one failure must not keep the others
                    warnings.warn(f"resource_tracker: {name}: {exc!r}", UserWarning, stacklevel=1)


_trackers: weakref.WeakSet[ResourceTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_trackers):
        tracker._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)

_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd
