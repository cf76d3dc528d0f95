"""Process pools, as in :mod:`multiprocessing.pool`.

``Pool`` never hangs on a dead worker, can time tasks out (``task_timeout=``), and takes
lambdas; see ``polyproc._pool._pool`` for the full list of what it adds.
``ThreadPool`` is the same API run by threads.
"""

from __future__ import annotations

from . import context as _context
from ._backends import _dask  # noqa: F401 - registers the Dask engine (Dask itself loads lazily)
from ._pool import _pool
from ._pool._executor import PoolExecutor
from ._pool._pool import Pool
from ._pool._results import (
    ApplyResult,
    AsyncResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
)
from ._pool._threads import ThreadEngine

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ._pool._contract import Engine

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "Pool",
    "PoolExecutor",
    "ThreadPool",
]


class ThreadPool(_pool.Pool):
    """The Pool API run by threads of this process (nothing is pickled)."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        super().__init__(processes, initializer, initargs, None, _context.default_context)

    def _make_engine(self, *args: Any) -> Engine:
        return ThreadEngine(*args)

    def _timeout(self, task_timeout: float | None) -> float | None:
        if task_timeout is not None:
            raise ValueError("task_timeout needs worker processes: a thread cannot be killed")
        return None

    def _encode(self, payload: tuple[Any, ...], context: str) -> Any:
        return payload, ()

