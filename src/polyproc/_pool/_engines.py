"""Where a Pool finds engines for ``cluster=``: the backends register themselves here.

A backend lives in a layer above the pool (``_backends``), so the pool cannot import it;
the facade imports the backends, which register a factory under a name.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["cluster_engine", "register_cluster_engine"]

_factories: dict[str, Callable[..., Any]] = {}


def register_cluster_engine(name: str, factory: Callable[..., Any]) -> None:
    """Make *factory(cluster, processes, initializer, initargs, options, retries,
    retry_on)* the engine of pools given a cluster of kind *name*."""
    _factories[name] = factory


def cluster_engine(name: str) -> Callable[..., Any]:
    """The factory registered under *name*.

    Raises:
        ValueError: no such backend.
    """
    try:
        return _factories[name]
    except KeyError:
        raise ValueError(
            f"no cluster backend {name!r} (known: {', '.join(sorted(_factories)) or 'none'})"
        ) from None
