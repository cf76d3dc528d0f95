"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier across processes.

The first four are the native futex semaphore of ``_os._semaphore`` (acquire and release
are C methods, with nothing in between), its 64-byte state in a block of the shared heap.
Condition, Event and Barrier are built from them in Python, as multiprocessing builds
them.

A process that dies holding a Lock or RLock does not block the others forever: the next
process to wait for it takes it over (within about 100 ms) and gets an
:class:`~polyproc.exceptions.AbandonedLockWarning`.

Pickling: every object here can be passed as a ``Process`` argument under every start
method and, unlike in multiprocessing, sent later too (through a queue or a pipe): its
shared block travels as a descriptor (see ``_heap``).
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from .._os import _semaphore
from .._os._semaphore import RECURSIVE_MUTEX, SEM_VALUE_MAX, SEMAPHORE, SLOT_SIZE
from .._process._state import runtime
from ..exceptions import AbandonedLockWarning
from . import _heap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "SemLock",
    "Semaphore",
]

_semaphore.set_abandoned_warning(AbandonedLockWarning)

# Every SemLock of this process: a forked child must forget what its parent held.
_all_semlocks: weakref.WeakSet[SemLock] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for lock in list(_all_semlocks):
        lock._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SemLock(_semaphore.SemLock):
    """Base of the semaphore-backed primitives: a native semaphore in a shared block."""

    _block: _heap.Block

    def __init__(self, kind: int, value: int, maxvalue: int) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        if value > SEM_VALUE_MAX:
            raise ValueError(f"semaphore initial value must be <= {SEM_VALUE_MAX}")
        block = _heap.allocate(SLOT_SIZE)
        super().__init__(block.segment.map, block.offset, kind, value, maxvalue, True)
        self._block = block
        self._kind = kind
        self._maxvalue = maxvalue
        _all_semlocks.add(self)

    def __reduce__(self) -> Any:
        return _rebuild_semlock, (type(self), self._block, self._kind, self._maxvalue)

    # What code written against multiprocessing.synchronize reaches for: there a SemLock
    # wraps a native ``_semlock`` object; here the primitive is its own native object.
    @property
    def _semlock(self) -> SemLock:
        return self

    @property
    def kind(self) -> int:
        """``RECURSIVE_MUTEX`` for RLock, ``SEMAPHORE`` otherwise (as the stdlib's)."""
        return self._kind

    @property
    def maxvalue(self) -> int:
        """The bound of a BoundedSemaphore (``SEM_VALUE_MAX`` when unbounded)."""
        return self._maxvalue


def _rebuild_semlock(cls: type[SemLock], block: _heap.Block, kind: int, maxvalue: int) -> SemLock:
    obj = cls.__new__(cls)
    _semaphore.SemLock.__init__(obj, block.segment.map, block.offset, kind, 0, maxvalue, False)
    obj._block = block
    obj._kind = kind
    obj._maxvalue = maxvalue
    _all_semlocks.add(obj)
    return obj


def _owner_name(lock: SemLock) -> str:
    if lock._is_mine():
        name: str = runtime.current.name
        if threading.current_thread().name != "MainThread":
            name += "|" + threading.current_thread().name
        return name
    if lock._get_value() == 1:
        return "None"
    if lock._count() > 0:
        return "SomeOtherThread"
    return "SomeOtherProcess"


class Lock(SemLock):
    """A non-recursive lock; any process or thread may release it (as in multiprocessing)."""

    def __init__(self) -> None:
        super().__init__(SEMAPHORE, 1, 1)

    def __repr__(self) -> str:
        try:
            owner = _owner_name(self)
        except Exception:
            owner = "unknown"
        return f"<{type(self).__name__}(owner={owner})>"


class RLock(SemLock):
    """A recursive lock: the holding thread may acquire it again; it must release it."""

    def __init__(self) -> None:
        super().__init__(RECURSIVE_MUTEX, 1, 1)

    def __repr__(self) -> str:
        try:
            owner = _owner_name(self)
            count: object = self._count() if self._is_mine() else (
                0 if owner == "None" else "nonzero"
            )
        except Exception:
            owner, count = "unknown", "unknown"
        return f"<{type(self).__name__}({owner}, {count})>"


class Semaphore(SemLock):
    """A counting semaphore starting at *value*."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(SEMAPHORE, value, SEM_VALUE_MAX)

    def get_value(self) -> int:
        """The current count."""
        return int(self._get_value())

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._get_value()})>"


class BoundedSemaphore(Semaphore):
    """A semaphore whose release past its initial *value* raises ValueError."""

    def __init__(self, value: int = 1) -> None:
        SemLock.__init__(self, SEMAPHORE, value, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._get_value()}, maxvalue={self._maxvalue})>"


class Condition:
    """A condition variable over *lock* (a new RLock by default), shared between processes.

    Waiters are counted in semaphores rather than kept in a list, since the list would
    have to live in shared memory: ``sleeping`` counts waiters, ``wakeup`` lets them go,
    ``woken`` lets a notifier wait until those it released have left.
    """

    def __init__(self, lock: Any = None) -> None:
        self._lock = lock if lock is not None else RLock()
        self._sleeping = Semaphore(0)
        self._woken = Semaphore(0)
        self._wakeup = Semaphore(0)
        self._bind()

    def _bind(self) -> None:
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __getstate__(self) -> Any:
        return self._lock, self._sleeping, self._woken, self._wakeup

    def __setstate__(self, state: Any) -> None:
        self._lock, self._sleeping, self._woken, self._wakeup = state
        self._bind()

    def __enter__(self) -> bool:
        return bool(self._lock.__enter__())

    def __exit__(self, *args: object) -> None:
        self._lock.__exit__(*args)

    def __repr__(self) -> str:
        try:
            sleepers: object = self._sleeping._get_value() - self._woken._get_value()
        except Exception:
            sleepers = "unknown"
        return f"<{type(self).__name__}({self._lock}, {sleepers})>"

    def _check_owned(self) -> None:
        if not self._lock._is_mine():
            raise AssertionError("must acquire() condition before using wait() or notify()")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notify (or *timeout* seconds), reacquire.

        Returns False if the wait timed out.

        Raises:
            AssertionError: the calling thread does not hold the lock.
        """
        self._check_owned()
        self._sleeping.release()
        depth = self._lock._count()
        for _ in range(depth):
            self._lock.release()
        try:
            return bool(self._wakeup.acquire(True, timeout))
        finally:
            self._woken.release()
            for _ in range(depth):
                self._lock.acquire()

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until *predicate()* is true, or *timeout* seconds pass; return its last value."""
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        while not result:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiters.

        Raises:
            AssertionError: the calling thread does not hold the lock.
        """
        self._check_owned()
        if self._wakeup.acquire(False):
            raise AssertionError("notify: a wake-up from an earlier notify is still pending")
        # Waiters that timed out are still counted as sleeping: settle them first.
        while self._woken.acquire(False):
            self._sleeping.acquire(False)
        released = 0
        while released < n and self._sleeping.acquire(False):
            self._wakeup.release()
            released += 1
        for _ in range(released):
            self._woken.acquire()  # each released waiter confirms it is awake
        # A waiter may have timed out after we counted it: drop its unused wake-up.
        while self._wakeup.acquire(False):
            pass

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(SEM_VALUE_MAX)


class Event:
    """A flag processes can set, clear and wait for."""

    def __init__(self) -> None:
        self._cond = Condition(Lock())
        self._flag = Semaphore(0)

    def is_set(self) -> bool:
        """Whether the flag is set."""
        with self._cond:
            if self._flag.acquire(False):
                self._flag.release()
                return True
            return False

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._cond:
            self._flag.acquire(False)
            self._flag.release()
            self._cond.notify_all()

    def clear(self) -> None:
        """Clear the flag."""
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set or *timeout* seconds pass; return the flag."""
        with self._cond:
            if self._flag.acquire(False):
                self._flag.release()
                return True
            self._cond.wait(timeout)
            if self._flag.acquire(False):
                self._flag.release()
                return True
            return False

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<{type(self).__name__} at {id(self):#x} {state}>"


_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2


class Barrier:
    """A barrier for *parties* processes (or threads), as ``threading.Barrier``.

    Its state (phase and number of waiters) lives in a shared block, guarded by a
    Condition; *action*, if given, is run by one party when the barrier trips (it must be
    picklable to reach other processes).

    Raises (from ``wait``):
        threading.BrokenBarrierError: the barrier was aborted or reset while waiting, or a
            wait timed out.
    """

    def __init__(
        self, parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None
    ) -> None:
        if parties < 1:
            raise ValueError("parties must be >= 1")
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._cond = Condition(Lock())
        self._block = _heap.allocate(8)
        self._bind()

    def _bind(self) -> None:
        self._words = self._block.view().cast("i")

    def __getstate__(self) -> Any:
        return self._parties, self._action, self._timeout, self._cond, self._block

    def __setstate__(self, state: Any) -> None:
        self._parties, self._action, self._timeout, self._cond, self._block = state
        self._bind()

    @property
    def _state(self) -> int:
        return int(self._words[0])

    @_state.setter
    def _state(self, value: int) -> None:
        self._words[0] = value

    @property
    def _count(self) -> int:
        return int(self._words[1])

    @_count.setter
    def _count(self, value: int) -> None:
        self._words[1] = value

    @property
    def parties(self) -> int:
        """The number of parties needed to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """How many parties wait now."""
        return self._count if self._state == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._state == _BROKEN

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this party's index, 0 to parties-1."""
        if timeout is None:
            timeout = self._timeout
        with self._cond:
            self._wait_out_draining()
            index = self._count
            self._count += 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait_for_release(timeout)
                return index
            finally:
                self._count -= 1
                self._leave()

    def _wait_out_draining(self) -> None:
        while self._state in (_DRAINING, _RESETTING):
            self._cond.wait()
        if self._state < 0:
            raise threading.BrokenBarrierError

    def _release(self) -> None:
        try:
            if self._action is not None:
                self._action()
            self._state = _DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _wait_for_release(self, timeout: float | None) -> None:
        if not self._cond.wait_for(lambda: self._state != _FILLING, timeout):
            self._break()
            raise threading.BrokenBarrierError
        if self._state < 0:
            raise threading.BrokenBarrierError

    def _leave(self) -> None:
        if self._count == 0 and self._state in (_RESETTING, _DRAINING):
            self._state = _FILLING
            self._cond.notify_all()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()

    def reset(self) -> None:
        """Return the barrier to its empty state; current waiters get BrokenBarrierError."""
        with self._cond:
            if self._count > 0:
                if self._state in (_FILLING, _BROKEN):
                    self._state = _RESETTING
            else:
                self._state = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and future waiters get BrokenBarrierError."""
        with self._cond:
            self._break()

    def __repr__(self) -> str:
        if self.broken:
            return f"<{type(self).__name__} broken>"
        return f"<{type(self).__name__} waiters={self.n_waiting}/{self.parties}>"
