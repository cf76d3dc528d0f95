"""Helpers shared by the topic modules and the worker.

Children started by the ``spawn`` and ``forkserver`` methods import this module (through the
topic module that holds their target function), so it imports nothing at all: whatever a child
loads counts in the start-up time being measured, and would count for every library alike,
shrinking the differences between them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any


class Unavailable(Exception):
    """The implementation lacks what a benchmark needs: it is skipped, with this message."""


def require(obj: object, *names: str) -> None:
    """Raise `Unavailable` unless *obj* has every attribute in *names*."""
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        owner = getattr(obj, "__name__", type(obj).__name__)
        raise Unavailable(f"{owner} has no {', '.join(missing)} yet")


def get_context(mod: ModuleType, method: str) -> Any:
    """Return ``mod.get_context(method)``, or raise `Unavailable` if *mod* cannot provide it."""
    require(mod, "get_context")
    try:
        ctx = mod.get_context(method)
    except (ValueError, NotImplementedError) as exc:
        raise Unavailable(f"{mod.__name__}.get_context({method!r}) failed: {exc}") from exc
    require(ctx, "Process")
    return ctx
