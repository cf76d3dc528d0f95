"""What a pool's callers hold and wait on: ApplyResult, MapResult and the imap iterators.

The engine's manager thread fills them in; callers block on them with an optional
timeout. Callbacks run in the manager thread, as in multiprocessing, so they should be
quick.
"""

from __future__ import annotations

import collections
import threading
import time

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
        self._event = threading.Event()
        self._success = False
        self._value: Any = None
        self._callback = callback
        self._error_callback = error_callback

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising.

        Raises:
            ValueError: the result is not ready yet.
        """
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready or *timeout* seconds pass."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result, waiting up to *timeout* seconds; re-raises the task's exception.

        Raises:
            polyproc.TimeoutError: not ready within *timeout* (also the builtin
                TimeoutError).
            Exception: whatever the task raised, with the worker's traceback as its
                ``__cause__``; WorkerLostError if its worker died.
        """
        if not self._event.wait(timeout):
            raise TimeoutError(f"result not ready after {timeout} seconds")
        if self._success:
            return self._value
        raise self._value

    def _set(self, success: bool, value: Any) -> None:
        if self._event.is_set():
            return
        self._success, self._value = success, value
        self._event.set()
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
    """The result of ``map_async``/``starmap_async``: a list assembled from chunks."""

    def __init__(
        self,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None:
        super().__init__(callback, error_callback)
        self._chunks: dict[int, list[Any]] = {}
        self._expected: int | None = None
        self._lock = threading.Lock()

    def _set_total(self, chunks: int) -> None:
        with self._lock:
            self._expected = chunks
        self._maybe_done()

    def _set_chunk(self, index: int, values: list[Any]) -> None:
        with self._lock:
            self._chunks[index] = values
        self._maybe_done()

    def _fail(self, exc: BaseException) -> None:
        self._set(False, exc)

    def _maybe_done(self) -> None:
        with self._lock:
            if self._expected is None or len(self._chunks) < self._expected:
                return
            values = [v for i in range(self._expected) for v in self._chunks[i]]
        self._set(True, values)


class IMapIterator:
    """Results of ``imap`` in input order; ``next(timeout)`` waits at most *timeout*.

    The engine delivers whole chunks (``_put_chunk``): each a list of ``(success, value)``
    outcomes. A chunk whose task raised ends with that one failure; its later items were
    never computed, as in multiprocessing.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._chunks: dict[int, list[tuple[bool, Any]]] = {}
        self._next_chunk = 0
        self._current: collections.deque[tuple[bool, Any]] = collections.deque()
        self._total: int | None = None

    def _put_chunk(self, index: int, outcomes: list[tuple[bool, Any]]) -> None:
        with self._cond:
            self._chunks[index] = outcomes
            self._cond.notify_all()

    def _set_total(self, chunks: int) -> None:
        with self._cond:
            self._total = chunks
            self._cond.notify_all()

    def _take_chunk(self) -> list[tuple[bool, Any]] | None:
        chunk = self._chunks.pop(self._next_chunk, None)
        if chunk is not None:
            self._next_chunk += 1
        return chunk

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result, waiting up to *timeout* seconds.

        Raises:
            StopIteration: every result has been returned.
            polyproc.TimeoutError: nothing arrived within *timeout*.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._current:
                chunk = self._take_chunk()
                if chunk is not None:
                    self._current.extend(chunk)
                    continue
                if self._total is not None and self._next_chunk >= self._total:
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no result after {timeout} seconds")
                self._cond.wait(remaining)
            success, value = self._current.popleft()
        if success:
            return value
        raise value

    __next__ = next


class IMapUnorderedIterator(IMapIterator):
    """Results of ``imap_unordered``, chunk by chunk in the order they complete."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived: collections.deque[list[tuple[bool, Any]]] = collections.deque()

    def _put_chunk(self, index: int, outcomes: list[tuple[bool, Any]]) -> None:
        with self._cond:
            self._arrived.append(outcomes)
            self._cond.notify_all()

    def _take_chunk(self) -> list[tuple[bool, Any]] | None:
        if not self._arrived:
            return None
        self._next_chunk += 1
        return self._arrived.popleft()
