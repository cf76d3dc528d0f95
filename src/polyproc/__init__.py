"""polyproc: Python's multiprocessing, rebuilt to never hang and to go past one machine.

``import polyproc as multiprocessing`` is meant to just work. The names below are the
documented multiprocessing API, bound to the default context (see
:mod:`polyproc.context`), plus the exception tree of :mod:`polyproc.exceptions`.

The layout, each layer importing only the ones below it, is stated once in
:mod:`polyproc._layers` (and shown in the README): ``_os`` -> ``_wire`` -> ``_process``
-> ``_shared`` -> ``_pool``/``_managers`` -> ``_backends`` -> these public modules ->
``_cli``.
"""

from __future__ import annotations

from os import environ as _environ

from . import connection as connection
from . import context as _context
from . import context as context
from . import process as process
from . import util as util
from .context import Process
from .exceptions import (
    AbandonedLockWarning,
    AuthenticationError,
    BufferTooShort,
    InitializerError,
    ProcessError,
    RemoteError,
    SerializationError,
    TimeoutError,
    WorkerLostError,
)

__version__ = "0.1.0"

__all__ = [
    "AbandonedLockWarning",
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Event",
    "InitializerError",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "RemoteError",
    "Semaphore",
    "SerializationError",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "WorkerLostError",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "install",
    "log_to_stderr",
    "parent_process",
    "reducer",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
]

_default = _context.default_context

Array = _default.Array
Barrier = _default.Barrier
BoundedSemaphore = _default.BoundedSemaphore
Condition = _default.Condition
Event = _default.Event
JoinableQueue = _default.JoinableQueue
Lock = _default.Lock
Manager = _default.Manager
Pipe = _default.Pipe
Pool = _default.Pool
Queue = _default.Queue
RLock = _default.RLock
RawArray = _default.RawArray
RawValue = _default.RawValue
Semaphore = _default.Semaphore
SimpleQueue = _default.SimpleQueue
Value = _default.Value
active_children = _default.active_children
allow_connection_pickling = _default.allow_connection_pickling
cpu_count = _default.cpu_count
current_process = _default.current_process
freeze_support = _default.freeze_support
get_all_start_methods = _default.get_all_start_methods
get_context = _default.get_context
get_logger = _default.get_logger
get_start_method = _default.get_start_method
log_to_stderr = _default.log_to_stderr
parent_process = _default.parent_process
set_executable = _default.set_executable
set_forkserver_preload = _default.set_forkserver_preload
set_start_method = _default.set_start_method


# Heavier public submodules load on first access (``polyproc.pool``...), as the factories
# above load them on first call: every spawned child imports this package.
_LAZY_SUBMODULES = frozenset(
    {"managers", "pool", "queues", "sharedctypes", "shared_memory", "synchronize", "dummy",
     "reduction", "resource_tracker", "resource_sharer", "spawn", "forkserver", "heap",
     "popen_fork", "popen_spawn_posix", "popen_forkserver"}
)


def install(*, children: bool = True) -> None:
    """Make ``import multiprocessing`` give polyproc, in this process and (with *children*)
    every process the program starts. See :mod:`polyproc._install`.

    Warns:
        RuntimeWarning: the standard library's multiprocessing was already imported.
    """
    from ._install import install as _install

    _install(children=children)


# As in multiprocessing's package namespace.
SUBDEBUG = 5
SUBWARNING = 25


def __getattr__(name: str) -> object:
    if name == "reducer":  # the default context's reducer: polyproc.reduction, on first use
        return _default.reducer
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A process of a program that ran polyproc.install() (or `polyproc run`) installs too:
# spawned children and servers are fresh interpreters that import polyproc first.
if _environ.get("POLYPROC_AS_MULTIPROCESSING") == "1":
    install()
