"""What a pool's callers hold and wait on: ApplyResult, MapResult and the imap iterators.

The engine's manager thread fills them in; callers block on them with an optional
timeout. Callbacks run in the manager thread, as in multiprocessing, so they should be
quick.
"""

from __future__ import annotations

import collections
import threading
import time
from _thread import allocate_lock as _allocate_lock

from ..exceptions import TimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["ApplyResult", "IMapIterator", "IMapUnorderedIterator", "MapResult"]


class ApplyResult:
    """The result of one ``apply_async`` (``AsyncResult`` in multiprocessing's docs)."""

    def __init__(
        self,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None:
        # A lock held until the result is set: cheaper to make than an Event, and every
        # waiter passes through it (acquire, then release for the next one).
        self._unset = _allocate_lock()
        self._unset.acquire()
        self._ready = False
        self._success = False
        self._value: Any = None
        self._callback = callback
        self._error_callback = error_callback

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._ready

    def successful(self) -> bool:
        """Whether the call completed without raising.

        Raises:
            ValueError: the result is not ready yet.
        """
        if not self._ready:
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or *timeout* seconds pass."""
        self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        if self._ready:
            return True
        if timeout is None:
            acquired = self._unset.acquire()
        else:
            acquired = self._unset.acquire(timeout=max(0.0, timeout))
        if acquired:
            self._unset.release()
        return self._ready

    def get(self, timeout: float | None = None) -> Any:
        """The result, waiting up to *timeout* seconds; re-raises the task's exception.

        Raises:
            polyproc.TimeoutError: not ready within *timeout* (also the builtin
                TimeoutError).
            Exception: whatever the task raised, with the worker's traceback as its
                ``__cause__``; WorkerLostError if its worker died.
        """
        if not self._ready and not self._wait(timeout):
            raise TimeoutError(f"result not ready after {timeout} seconds")
        if self._success:
            return self._value
        raise self._value

    def _deliver(self, first: int, success: bool, value: Any) -> None:
        """The engine's delivery of the one task: ``[result]``, or ``(_, exception)``."""
        if success:
            self._set(True, value[0])
        else:
            self._set(False, value[1])

    def _set(self, success: bool, value: Any) -> None:
        if self._ready:
            return
        self._success, self._value = success, value
        self._ready = True
        self._unset.release()
        callback = self._callback if success else self._error_callback
        if callback is not None:
            try:
                callback(value)
            except Exception:  # a failing callback must not stop the manager thread
                import traceback

                traceback.print_exc()

    def __repr__(self) -> str:
        state = "pending" if not self.ready() else ("ok" if self._success else "failed")
        return f"<{type(self).__name__} {state}>"


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async``/``starmap_async``: a list assembled from pieces."""

    def __init__(
        self,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None:
        super().__init__(callback, error_callback)
        self._pieces: dict[int, list[Any]] = {}
        self._have = 0
        self._expected: int | None = None
        self._lock = threading.Lock()

    def _set_total(self, items: int) -> None:
        with self._lock:
            self._expected = items
        self._maybe_done()

    def _put(self, first: int, values: list[Any]) -> None:
        """Results of items ``first...``."""
        with self._lock:
            self._pieces[first] = values
            self._have += len(values)
        self._maybe_done()

    def _fail(self, exc: BaseException) -> None:
        self._set(False, exc)

    def _maybe_done(self) -> None:
        with self._lock:
            if self._expected is None or self._have < self._expected or self._ready:
                return
            values: list[Any] = []
            for first in sorted(self._pieces):
                values.extend(self._pieces[first])
            self._pieces.clear()
        self._set(True, values)


class IMapIterator:
    """Results of ``imap`` in input order; ``next(timeout)`` waits at most *timeout*.

    The engine delivers pieces (``_put``): the results of consecutive items, and possibly
    the failure of the task that followed them. A task that raised yields that one
    exception; its later items were never computed, as in multiprocessing.
    """

    #: The most items an input is ever read ahead of its reader (see ``buffersize``).
    UNREAD_HIGH = 1 << 16

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._pieces: dict[int, tuple[list[Any], BaseException | None, int]] = {}
        self._position = 0  # items accounted for, in order
        self._current: collections.deque[Any] = collections.deque()
        self._total: int | None = None
        # Results taken by the readers (without the lock: a reader's fast path pops from
        # _current alone), and items that yield no result (the rest of a chunk after its
        # failure): together, the items the reader is done with.
        self._taken = 0
        self._skipped = 0
        self._paused = False
        self._resume_when = 0  # items done with at which a paused input goes on
        self.resume: Callable[[], None] | None = None  # the engine's, to read input again

    def _consumed(self) -> int:
        """Items whose results the reader has taken (or that have none)."""
        return self._taken + self._skipped

    def _pause(self, resume_when: int) -> bool:
        """Pause the input until the reader is done with *resume_when* items; False if it
        is already (then the input goes on). Only engines that can be resumed pause."""
        with self._cond:
            if self.resume is None or self._taken + self._skipped >= resume_when:
                return False
            self._paused = True
            self._resume_when = resume_when
            return True

    def _put(self, first: int, values: list[Any], failure: BaseException | None,
             items: int) -> None:
        """*values* for items ``first...``; then *failure* if given; *items* in all."""
        with self._cond:
            self._pieces[first] = (values, failure, items)
            self._skipped += items - len(values) - (failure is not None)
            self._cond.notify_all()

    def _set_total(self, items: int) -> None:
        with self._cond:
            self._total = items
            self._cond.notify_all()

    def _take_piece(self) -> bool:
        piece = self._pieces.pop(self._position, None)
        if piece is None:
            return False
        values, failure, items = piece
        self._position += items
        self._current.extend(values)
        if failure is not None:
            self._current.append(_Failure(failure))
        return True

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result, waiting up to *timeout* seconds.

        Raises:
            StopIteration: every result has been returned.
            polyproc.TimeoutError: nothing arrived within *timeout*.
        """
        try:
            value = self._current.popleft()  # the fast path: a result is waiting
        except IndexError:
            value = self._wait_for_next(timeout)
        self._taken += 1
        if self._paused and self._taken + self._skipped >= self._resume_when:
            self._resume_input()
        if type(value) is _Failure:
            raise value.error
        return value

    __next__ = next

    def _resume_input(self) -> None:
        with self._cond:
            resume = self.resume if self._paused else None
            self._paused = False
        if resume is not None:
            resume()

    def _wait_for_next(self, timeout: float | None) -> Any:
        deadline = None
        while True:
            with self._cond:
                while not self._current:
                    if self._take_piece():
                        continue
                    if self._total is not None and self._position >= self._total:
                        raise StopIteration
                    if self._paused and self._taken + self._skipped >= self._resume_when:
                        break  # the input waits for this reader: resume it, outside the lock
                    if timeout is not None:
                        if deadline is None:
                            deadline = time.monotonic() + timeout
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise TimeoutError(f"no result after {timeout} seconds")
                        self._cond.wait(remaining)
                    else:
                        self._cond.wait()
                else:
                    return self._current.popleft()
            self._resume_input()


class IMapUnorderedIterator(IMapIterator):
    """Results of ``imap_unordered``, in the order they complete."""

    def _put(self, first: int, values: list[Any], failure: BaseException | None,
             items: int) -> None:
        with self._cond:
            self._position += items
            self._current.extend(values)
            self._skipped += items - len(values) - (failure is not None)
            if failure is not None:
                self._current.append(_Failure(failure))
            self._cond.notify_all()

    def _take_piece(self) -> bool:
        return False


class _Failure:
    """A task's exception, standing in the results where its values would have been."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
