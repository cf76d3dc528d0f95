"""Contexts: the multiprocessing API bound to one start method.

``get_context("spawn")`` returns a context whose ``Process`` (and, as later layers land,
every other factory) uses spawn; the module-level functions of :mod:`polyproc` are the
bound methods of the *default* context, which follows ``set_start_method``.
"""

from __future__ import annotations

import os
import sys
import threading

from . import util
from ._process import _finalize
from ._process._process import (
    BaseProcess,
    active_children,
    current_process,
    parent_process,
)
from ._process._state import ALL_START_METHODS, default_start_method, runtime
from ._wire._connection import Connection, make_pipe
from .exceptions import AuthenticationError, BufferTooShort, ProcessError, TimeoutError

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    import types
    from typing import Any

    from . import managers, pool, popen_fork, queues, synchronize


__all__ = [
    "BaseContext",
    "DefaultContext",
    "ForkContext",
    "ForkProcess",
    "ForkServerContext",
    "ForkServerProcess",
    "Process",
    "SpawnContext",
    "SpawnProcess",
    "assert_spawning",
    "get_spawning_popen",
    "set_spawning_popen",
]

# The Popen module of each start method (the standard library's Process._Popen).
_POPEN_MODULES = {
    "fork": "popen_fork",
    "spawn": "popen_spawn_posix",
    "forkserver": "popen_forkserver",
}


def _popen(method: str, process_obj: BaseProcess) -> popen_fork.Popen:
    import importlib  # the Popen classes are for code that asks for them: load on demand

    module = importlib.import_module(f"{__package__}.{_POPEN_MODULES[method]}")
    popen: popen_fork.Popen = module.Popen(process_obj)
    return popen


def _after_fork() -> None:
    """What a child does at its start: forget inherited finalizers, run after-fork hooks."""
    _finalize.child_started()


class Process(BaseProcess):
    """A process started with the default context's start method."""

    _start_method = None
    _after_fork = staticmethod(_after_fork)

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> popen_fork.Popen:
        """Start *process_obj* with the default start method; return its Popen handle.

        ``start()`` does not go through it (it uses the launchers directly).
        """
        method = _default_context.get_context().get_start_method() or "fork"
        return _popen(method, process_obj)


class ForkProcess(BaseProcess):
    """A process started by ``fork``."""

    _start_method = "fork"
    _after_fork = staticmethod(_after_fork)

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> popen_fork.Popen:
        """Start *process_obj* with ``fork``; return its Popen handle."""
        return _popen("fork", process_obj)


class SpawnProcess(BaseProcess):
    """A process started by ``spawn``: a fresh interpreter."""

    _start_method = "spawn"
    _after_fork = staticmethod(_after_fork)

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> popen_fork.Popen:
        """Start *process_obj* with ``spawn``; return its Popen handle."""
        return _popen("spawn", process_obj)


class ForkServerProcess(BaseProcess):
    """A process forked by the fork server."""

    _start_method = "forkserver"
    _after_fork = staticmethod(_after_fork)

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> popen_fork.Popen:
        """Start *process_obj* with ``forkserver``; return its Popen handle."""
        return _popen("forkserver", process_obj)


class BaseContext:
    """The multiprocessing API; concrete contexts fix the start method."""

    _name: str | None = None
    Process: type[BaseProcess] = Process

    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError

    current_process = staticmethod(current_process)
    parent_process = staticmethod(parent_process)
    active_children = staticmethod(active_children)

    def cpu_count(self) -> int:
        """The number of CPUs in the system.

        Raises:
            NotImplementedError: the number cannot be determined.
        """
        count = os.cpu_count()
        if count is None:
            raise NotImplementedError("cannot determine number of cpus")
        return count

    def Pipe(self, duplex: bool = True) -> tuple[Connection, Connection]:
        """Two connected :class:`~polyproc.connection.Connection` objects.

        With *duplex* false the first can only receive and the second only send.
        """
        return make_pipe(duplex)

    # -- shared state (polyproc.synchronize, polyproc.sharedctypes) -------------------
    def Lock(self) -> synchronize.Lock:
        """A non-recursive lock shared between processes.

        Raises:
            RuntimeError: called by the standard library's ``multiprocessing.queues`` for a
                context that starts fresh interpreters (see :func:`_refuse_stdlib_queue`).
        """
        from . import synchronize  # on first use: it costs a spawned child ms to import

        if sys._getframe(1).f_globals.get("__name__") == "multiprocessing.queues":
            _refuse_stdlib_queue(self)
        return synchronize.Lock()

    def RLock(self) -> synchronize.RLock:
        """A recursive lock shared between processes."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.RLock()

    def Condition(self, lock: Any = None) -> synchronize.Condition:
        """A condition variable over *lock* (a new RLock by default)."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.Condition(lock)

    def Semaphore(self, value: int = 1) -> synchronize.Semaphore:
        """A counting semaphore."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.Semaphore(value)

    def BoundedSemaphore(self, value: int = 1) -> synchronize.BoundedSemaphore:
        """A semaphore that cannot be released above its initial value."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.BoundedSemaphore(value)

    def Event(self) -> synchronize.Event:
        """An event flag shared between processes."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.Event()

    def Barrier(
        self, parties: int, action: Any = None, timeout: float | None = None
    ) -> synchronize.Barrier:
        """A barrier for *parties* processes."""
        from . import synchronize  # on first use: it costs a spawned child ms to import
        return synchronize.Barrier(parties, action, timeout)

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A ctypes object in shared memory, without a lock."""
        from . import sharedctypes  # on first use: it costs a spawned child ms to import
        return sharedctypes.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A ctypes array in shared memory, without a lock."""
        from . import sharedctypes  # on first use: it costs a spawned child ms to import
        return sharedctypes.RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A ctypes object in shared memory, guarded by a lock unless *lock* is False."""
        from . import sharedctypes  # on first use: it costs a spawned child ms to import
        return sharedctypes.Value(typecode_or_type, *args, lock=lock)

    def Array(
        self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True
    ) -> Any:
        """A ctypes array in shared memory, guarded by a lock unless *lock* is False."""
        from . import sharedctypes  # on first use: it costs a spawned child ms to import
        return sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock)

    # -- managers (polyproc.managers) ---------------------------------------------------
    def Manager(self) -> managers.SyncManager:
        """A started :class:`~polyproc.managers.SyncManager`, its server started with this
        context's method."""
        from . import managers  # on first use: it costs a spawned child ms to import
        context = self.get_context() if isinstance(self, DefaultContext) else self
        manager = managers.SyncManager(ctx=context)
        manager.start()
        return manager

    # -- pools (polyproc.pool) -----------------------------------------------------------
    def Pool(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
        **extensions: Any,
    ) -> pool.Pool:
        """A pool of worker processes started with this context's method.

        *extensions* are polyproc's keyword-only Pool options (``task_timeout``,
        ``retries``, ``retry_on``, ``max_worker_memory``, ``forward_logs``): see
        :class:`polyproc.pool.Pool`.
        """
        from . import pool  # on first use: it costs a spawned child ms to import
        context = self.get_context() if isinstance(self, DefaultContext) else self
        return pool.Pool(processes, initializer, initargs, maxtasksperchild, context, **extensions)

    # -- queues (polyproc.queues) ------------------------------------------------------
    def Queue(self, maxsize: int = 0) -> queues.Queue:
        """A process-shared FIFO queue (see :class:`polyproc.queues.Queue`)."""
        from . import queues  # on first use: it costs a spawned child ms to import
        return queues.Queue(maxsize)

    def JoinableQueue(self, maxsize: int = 0) -> queues.JoinableQueue:
        """A Queue with ``task_done`` and ``join``."""
        from . import queues  # on first use: it costs a spawned child ms to import
        return queues.JoinableQueue(maxsize)

    def SimpleQueue(self) -> queues.SimpleQueue:
        """A simplified, unbounded queue."""
        from . import queues  # on first use: it costs a spawned child ms to import
        return queues.SimpleQueue()

    def get_context(self, method: str | None = None) -> BaseContext:
        """The context of *method* (``'fork'``, ``'spawn'``, ``'forkserver'``).

        Raises:
            ValueError: *method* is not a start method available here.
        """
        if method is None:
            return self
        try:
            return _concrete_contexts[method]
        except KeyError:
            raise ValueError(f"cannot find context for {method!r}") from None

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The name of this context's start method."""
        return self._name

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Only the default context can change its start method.

        Raises:
            ValueError: always, on a concrete context.
        """
        raise ValueError("cannot set start method of concrete context")

    def get_all_start_methods(self) -> list[str]:
        """The start methods available on this platform, the default first."""
        default = default_start_method()
        return [default, *(m for m in ALL_START_METHODS if m != default)]

    def set_forkserver_preload(self, module_names: list[str]) -> None:
        """Modules the fork server imports once, so its children start with them loaded.

        Takes effect when the next fork server starts.

        Raises:
            TypeError: *module_names* is not a list of strings.
        """
        if not all(isinstance(name, str) for name in module_names):
            raise TypeError("module_names must be a list of strings")
        runtime.forkserver_preload = list(module_names)

    def set_executable(self, executable: str | os.PathLike[str]) -> None:
        """The Python interpreter spawn and the fork server start children with."""
        runtime.executable = os.fsdecode(executable)

    def freeze_support(self) -> None:
        """A no-op: frozen executables need it only on Windows."""

    def allow_connection_pickling(self) -> None:
        """A no-op kept for compatibility: connections pickle where they can."""

    def get_logger(self) -> logging.Logger:
        """polyproc's logger (see :func:`polyproc.util.get_logger`)."""
        return util.get_logger()

    def log_to_stderr(self, level: int | str | None = None) -> logging.Logger:
        """Send polyproc's log records to stderr (see :func:`polyproc.util.log_to_stderr`)."""
        return util.log_to_stderr(level)

    @property
    def reducer(self) -> types.ModuleType:
        """The module that reduces objects for other processes: :mod:`polyproc.reduction`.

        Setting it replaces what this property (and ``polyproc.context.reduction``)
        returns, as in the standard library; polyproc's own pickling of process starts,
        queues and connections is not routed through it.
        """
        return _reduction()

    @reducer.setter
    def reducer(self, reduction: types.ModuleType) -> None:
        global _reduction_override
        _reduction_override = reduction

    def _check_available(self) -> None:
        """Every start method of polyproc is available on Linux: never raises."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} start method {self.get_start_method(True)!r}>"


def _refuse_stdlib_queue(context: BaseContext) -> None:
    """Fail early, and say the fix, when the standard library's queue is being built on a
    polyproc context that cannot carry it.

    That happens with ``concurrent.futures.ProcessPoolExecutor(mp_context=polyproc...)``
    when polyproc is not installed as multiprocessing: the executor's call queue is the
    standard library's, whose pipes and pickling rules polyproc's spawn and forkserver
    children cannot receive (it would fail later, at the first submit, obscurely). Under
    fork the child inherits everything and it works.
    """
    method = context.get_start_method()
    if method == "fork":
        return
    raise RuntimeError(
        "the standard library's multiprocessing.queues.Queue (used by concurrent.futures' "
        f"ProcessPoolExecutor) cannot run on polyproc's {method!r} context unless polyproc "
        "is installed as multiprocessing: call polyproc.install() before importing "
        "concurrent.futures (or start the program with `polyproc run`), then pass "
        f"mp_context=multiprocessing.get_context({method!r}); or use "
        "polyproc.pool.PoolExecutor"
    )


class ForkContext(BaseContext):
    """Start children with ``fork``."""

    _name = "fork"
    Process = ForkProcess


class SpawnContext(BaseContext):
    """Start children as fresh interpreters."""

    _name = "spawn"
    Process = SpawnProcess


class ForkServerContext(BaseContext):
    """Start children from the fork server."""

    _name = "forkserver"
    Process = ForkServerProcess


_concrete_contexts: dict[str, BaseContext] = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class DefaultContext(BaseContext):
    """The context behind the module-level API; its method follows set_start_method."""

    Process = Process

    def get_context(self, method: str | None = None) -> BaseContext:
        if method is None:
            if runtime.start_method is None:
                runtime.start_method = default_start_method()
            return _concrete_contexts[runtime.start_method]
        return super().get_context(method)

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The default start method; fixes it (to the platform default) unless *allow_none*."""
        if runtime.start_method is None:
            if allow_none:
                return None
            runtime.start_method = default_start_method()
        return runtime.start_method

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Choose the default start method, once (or again with *force*).

        Raises:
            RuntimeError: the method is already fixed and *force* is false.
            ValueError: *method* is unknown.
        """
        if runtime.start_method is not None and not force:
            raise RuntimeError("context has already been set")
        if method is None and force:
            runtime.start_method = None
            return
        runtime.start_method = super().get_context(method)._name


default_context = DefaultContext()
runtime.default_context = default_context.get_context

if sys.platform != "linux":  # pragma: no cover - polyproc targets Linux first
    raise ImportError("polyproc currently supports Linux only")

_default_context = default_context

_reduction_override: types.ModuleType | None = None


def _reduction() -> types.ModuleType:
    if _reduction_override is not None:
        return _reduction_override
    import importlib  # polyproc.reduction loads on first use, as the factories' modules do

    return importlib.import_module(f"{__package__}.reduction")


def __getattr__(name: str) -> object:
    # ``context.reduction``: the reducer module, resolved when first asked for.
    if name == "reduction":
        return _reduction()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _force_start_method(method: str) -> None:
    """Make *method* the default start method, whatever was set before."""
    runtime.start_method = _concrete_contexts[method]._name


# -- "is this thread spawning a child?" ---------------------------------------------------
# Set by the spawn and fork-server Popen classes while they pickle the process object.

_tls = threading.local()


def get_spawning_popen() -> Any:
    """The Popen object whose process object this thread is pickling, or ``None``."""
    return getattr(_tls, "spawning_popen", None)


def set_spawning_popen(popen: Any) -> None:
    """Record (or, with ``None``, clear) the Popen this thread is pickling for."""
    _tls.spawning_popen = popen


def assert_spawning(obj: object) -> None:
    """Check that *obj* is being pickled to start a child (under spawn or forkserver).

    Raises:
        RuntimeError: it is not; such objects may only reach a child by inheritance.
    """
    if get_spawning_popen() is None:
        raise RuntimeError(
            f"{type(obj).__name__} objects should only be shared between processes"
            " through inheritance"
        )
