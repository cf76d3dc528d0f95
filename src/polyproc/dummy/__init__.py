"""The multiprocessing API run by threads, as :mod:`multiprocessing.dummy`.

Processes are threads, locks and queues are the :mod:`threading` and :mod:`queue` ones,
and ``Pool`` is :class:`polyproc.pool.ThreadPool`. Useful to debug code written for
processes, or to run I/O-bound work through the same interface.
"""

from __future__ import annotations

import array
import builtins
import threading
import weakref
from queue import Queue

from ..pool import ThreadPool
from .connection import Pipe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = [
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "DummyProcess",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Namespace",
    "Pipe",
    "Pool",
    "Process",
    "Queue",
    "RLock",
    "Semaphore",
    "Value",
    "active_children",
    "current_process",
    "freeze_support",
    "shutdown",
]

Barrier = threading.Barrier
BoundedSemaphore = threading.BoundedSemaphore
Condition = threading.Condition
Event = threading.Event
Lock = threading.Lock
RLock = threading.RLock
Semaphore = threading.Semaphore
JoinableQueue = Queue

_children: weakref.WeakKeyDictionary[DummyProcess, None] = weakref.WeakKeyDictionary()


class DummyProcess(threading.Thread):
    """A thread with the Process interface (``start``, ``join``, ``exitcode``...)."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        threading.Thread.__init__(self, group, target, name, tuple(args), dict(kwargs or {}))
        self._pid = None
        self._children: weakref.WeakKeyDictionary[DummyProcess, None] = (
            weakref.WeakKeyDictionary()
        )
        self._start_called = False
        self._parent = current_process()

    def start(self) -> None:
        """Start the thread.

        Raises:
            AssertionError: called from a thread other than the one that created it.
        """
        if self._parent is not current_process():
            raise AssertionError(
                f"Parent is {self._parent!r} but current_process is {current_process()!r}"
            )
        self._start_called = True
        if hasattr(self._parent, "_children"):
            self._parent._children[self] = None
        threading.Thread.start(self)

    @property
    def exitcode(self) -> int | None:
        """0 once the thread has finished, else None."""
        if self._start_called and not self.is_alive():
            return 0
        return None


Process = DummyProcess
current_process = threading.current_thread
current_process()._children = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]


def active_children() -> list[DummyProcess]:
    """The started threads of the calling thread that are still alive."""
    children = getattr(current_process(), "_children", None)
    if children is None:
        return []
    for child in list(children):
        if not child.is_alive():
            children.pop(child, None)
    return list(children)


def freeze_support() -> None:
    """A no-op, as in multiprocessing.dummy."""


class Namespace:
    """A plain attribute container (what a manager's Namespace is across processes)."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = sorted((k, v) for k, v in self.__dict__.items() if not k.startswith("_"))
        return "Namespace({})".format(", ".join(f"{k}={v!r}" for k, v in items))


# Manager().dict() and Manager().list() of multiprocessing.dummy are the builtins.
dict = builtins.dict
list = builtins.list


def Array(typecode: str, sequence: Iterable[Any], lock: bool = True) -> array.array[Any]:
    """An :class:`array.array` (threads share memory already)."""
    return array.array(typecode, sequence)


class Value:
    """A value holder with ``.value`` (threads share memory already)."""

    def __init__(self, typecode: str, value: Any, lock: bool = True) -> None:
        self._typecode = typecode
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._typecode!r}, {self._value!r})>"


def Manager() -> Any:
    """This module itself: its dict, list, Namespace... are shared by threads as they are."""
    import sys

    return sys.modules[__name__]


def shutdown() -> None:
    """A no-op: what Manager() returns has nothing to shut down."""


def Pool(
    processes: int | None = None,
    initializer: Callable[..., object] | None = None,
    initargs: Iterable[Any] = (),
) -> ThreadPool:
    """A :class:`~polyproc.pool.ThreadPool`."""
    return ThreadPool(processes, initializer, initargs)
