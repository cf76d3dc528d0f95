"""Finalizers and after-fork hooks: what ``multiprocessing.util`` runs at exit and fork.

The registry lives here, in the process layer, because a child's bootstrap
(:func:`._child.run_child`) must run it without importing the public facade; the facade
module :mod:`polyproc.util` re-exports it under the standard library's names.

The rules, as multiprocessing documents and applies them:

* a :class:`Finalize` runs its callback once: when called, when its object is garbage
  collected, or (only if it has an *exitpriority*) when the process exits;
* at exit, finalizers with priority >= 0 run first, highest priority first and, within
  a priority, the most recently created first; then daemonic children are terminated and
  the others joined; then the remaining finalizers with a priority run;
* a finalizer runs only in the process that created it (a forked child inherits none);
* :func:`register_after_fork` hooks run in every child polyproc starts, at its start,
  for the objects still alive.
"""

from __future__ import annotations

import itertools
import os
import sys
import weakref

from .._os import _log
from ._process import exit_children

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = [
    "Finalize",
    "child_exiting",
    "child_started",
    "exit_function",
    "is_exiting",
    "register_after_fork",
    "run_after_forkers",
    "run_finalizers",
]

# (exitpriority, creation number) -> Finalize. Plain dict: a finalizer keeps itself
# registered until it runs or is cancelled, whatever happens to its object.
finalizer_registry: dict[tuple[int | None, int], Finalize] = {}
finalizer_counter = itertools.count()

# (creation number, id(obj), func) -> obj; an entry goes away with its object.
afterfork_registry: weakref.WeakValueDictionary[tuple[int, int, Any], Any] = (
    weakref.WeakValueDictionary()
)
afterfork_counter = itertools.count()

_exiting = False


class Finalize:
    """Call ``callback(*args, **kwargs)`` once: on demand, at garbage collection, or at exit.

    With an *obj*, the callback runs when *obj* is garbage collected (if it has not run
    before). With an integer *exitpriority*, it also runs at the exit of the process that
    created it (see the module docstring for the order). Without *obj*, *exitpriority* is
    required.

    Raises:
        TypeError: *exitpriority* is neither ``None`` nor an int.
        ValueError: both *obj* and *exitpriority* are ``None``.
    """

    def __init__(
        self,
        obj: object,
        callback: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        exitpriority: int | None = None,
    ) -> None:
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f"exitpriority ({exitpriority!r}) must be None or int, "
                f"not {type(exitpriority).__name__}"
            )
        if obj is not None:
            self._weakref: weakref.ref[Any] | None = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        else:
            self._weakref = None
        self._callback: Callable[..., Any] | None = callback
        self._args: Sequence[Any] | None = args
        self._kwargs: Mapping[str, Any] | None = kwargs or {}
        self._key: tuple[int | None, int] | None = (exitpriority, next(finalizer_counter))
        self._pid = os.getpid()
        finalizer_registry[self._key] = self

    def __call__(self, wr: object = None) -> Any:
        """Run the callback if it has not run (and this is its process); return its result.

        *wr* is the dead weak reference when the garbage collector calls; ignored.
        Exceptions of the callback propagate to the caller.
        """
        key = self._key
        if key is None or finalizer_registry.pop(key, None) is None:
            _log.sub_debug("finalizer no longer registered")
            return None  # already run or cancelled
        callback, args, kwargs = self._callback, self._args, self._kwargs
        self._clear()
        if self._pid != os.getpid() or callback is None:
            _log.sub_debug("finalizer ignored because different process")
            return None  # inherited from the parent by fork: not ours to run
        _log.sub_debug("finalizer calling %s with args %s and kwargs %s", callback, args, kwargs)
        return callback(*(args or ()), **(kwargs or {}))

    def cancel(self) -> None:
        """Unregister the finalizer: the callback will not run."""
        key = self._key
        if key is not None and finalizer_registry.pop(key, None) is not None:
            self._clear()

    def still_active(self) -> bool:
        """Whether the callback has neither run nor been cancelled."""
        return self._key in finalizer_registry

    def _clear(self) -> None:
        self._weakref = self._callback = self._args = self._kwargs = self._key = None

    def __repr__(self) -> str:
        obj = self._weakref() if self._weakref is not None else None
        if self._callback is None or (self._weakref is not None and obj is None):
            return "<Finalize object, dead>"
        name = getattr(self._callback, "__name__", repr(self._callback))
        text = f"<{type(self).__name__} object, callback={name}"
        if obj is not None:
            text += f", obj={type(obj).__name__}"
        if self._args:
            text += f", args={self._args!r}"
        if self._kwargs:
            text += f", kwargs={self._kwargs!r}"
        if self._key is not None and self._key[0] is not None:
            text += f", exitpriority={self._key[0]}"
        return text + ">"


def run_finalizers(minpriority: int | None = None) -> None:
    """Run the registered finalizers that have an exit priority >= *minpriority*.

    With *minpriority* ``None``, run every finalizer that has an exit priority, then
    forget the others' exit registration (they still run at garbage collection). The
    exception of a failing callback is printed to stderr and the others still run.
    """
    if minpriority is None:
        def wanted(key: tuple[int | None, int]) -> bool:
            return key[0] is not None
    else:
        def wanted(key: tuple[int | None, int]) -> bool:
            return key[0] is not None and key[0] >= minpriority

    # Callbacks may create finalizers (or let objects die): re-read the registry each
    # round, highest priority and newest first, until nothing eligible is left.
    while True:
        keys = sorted((k for k in list(finalizer_registry) if wanted(k)), key=_order)
        if not keys:
            break
        for key in keys:
            finalizer = finalizer_registry.get(key)
            if finalizer is None:
                continue
            try:
                finalizer()
            except Exception:
                import traceback  # the error path only

                traceback.print_exc()
    if minpriority is None:
        finalizer_registry.clear()


def _order(key: tuple[int | None, int]) -> tuple[int, int]:
    return (-(key[0] or 0), -key[1])


def is_exiting() -> bool:
    """Whether this process has started its multiprocessing exit sequence."""
    return _exiting


def exit_function() -> None:
    """The exit sequence, once per process; registered to run at interpreter exit.

    Finalizers of priority >= 0, then daemonic children terminated and the others
    joined, then the remaining finalizers that have a priority.
    """
    global _exiting
    if _exiting:
        return
    _exiting = True
    _log.info("process shutting down")
    _log.debug("running all \"atexit\" finalizers with priority >= 0")
    run_finalizers(0)
    exit_children()
    _log.debug("running the remaining \"atexit\" finalizers")
    run_finalizers()


def register_after_fork(obj: object, func: Callable[[Any], object]) -> None:
    """Call ``func(obj)`` in each child polyproc starts, at its start, while *obj* lives.

    Raises:
        TypeError: *obj* cannot be weakly referenced.
    """
    afterfork_registry[(next(afterfork_counter), id(obj), func)] = obj


def run_after_forkers() -> None:
    """Run the after-fork hooks, oldest first; a failing hook is reported, not raised."""
    for (_index, _ident, func), obj in sorted(afterfork_registry.items(), key=_first):
        try:
            func(obj)
        except Exception:
            import traceback

            sys.stderr.write(f"after forker raised exception: {func!r}\n")
            traceback.print_exc()


def _first(item: tuple[tuple[int, int, Any], Any]) -> int:
    return item[0][0]


def child_started() -> None:
    """Bootstrap hook of a child: drop the parent's finalizers, run the after-fork hooks."""
    global _exiting
    _exiting = False
    finalizer_registry.clear()
    run_after_forkers()


def child_exiting() -> None:
    """Exit hook of a child, once its target has returned or raised: :func:`exit_function`."""
    exit_function()


# Registered after _process's own exit_children, so it runs first (atexit is LIFO) and
# finalizers of priority >= 0 still see the children running, as in multiprocessing; the
# logging core keeps it ahead of logging's own exit handler, since it logs.
_log.register_exit_function(exit_function)
