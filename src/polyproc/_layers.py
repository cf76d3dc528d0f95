"""The layers of polyproc, lowest first: the one statement of how the code is organised.

A module imports only modules of its own layer or of lower ones. ``tests/test_layers.py``
enforces this map (``import``, ``from ... import`` and ``importlib.import_module`` of a
constant name), and the README's layout table is generated from it and checked against it.
Nothing imports this module at run time.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["LAYERS", "Layer", "layer_of", "markdown_table"]


class Layer(NamedTuple):
    """One layer: its top-level names inside the package, and what it does."""

    names: tuple[str, ...]
    role: str


LAYERS: tuple[Layer, ...] = (
    Layer(("exceptions", "_layers"), "the error tree, importable from anywhere; this map"),
    Layer(("_os",), "operating-system primitives: pidfds, reaping, waiting on descriptors, "
          "spawning, the native semaphore, ring and lifeline, logging, thread roles"),
    Layer(("_wire",), "transport and serialization: framed connections, picklers, "
          "authentication, descriptor passing, TLS"),
    Layer(("_process",), "processes: `BaseProcess`, the launchers (fork, spawn, forkserver), "
          "the child's bootstrap, finalizers"),
    Layer(("_shared",), "shared state: the shared heap, synchronization, sharedctypes, "
          "shared memory, queues"),
    Layer(("_pool", "_managers"), "the pool (result objects, the worker loop, the engine and "
          "its manager thread) and managers (server, protocol, proxies)"),
    Layer(("_backends",), "engines beyond local workers: the Dask engine behind "
          "`Pool(cluster=...)`"),
    Layer(("__init__", "_install", "connection", "context", "dummy", "forkserver", "heap",
           "managers", "pool", "popen_fork", "popen_forkserver", "popen_spawn_posix",
           "process", "queues", "reduction", "resource_sharer", "resource_tracker",
           "shared_memory", "sharedctypes", "spawn", "synchronize", "util"),
          "the public, stdlib-shaped facade (every submodule of `multiprocessing`), and "
          "`install()`"),
    Layer(("_cli", "__main__"), "the `polyproc` command: `run`, `map`, `demo`, `info`"),
)


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of *module* (a dotted name inside the package).

    Raises:
        LookupError: the module's top-level name belongs to no layer.
    """
    top = module.split(".", 1)[0]
    for index, layer in enumerate(LAYERS):
        if top in layer.names:
            return index
    raise LookupError(f"module {module!r} belongs to no layer: add it to polyproc._layers")


def markdown_table() -> str:
    """The README's layout table, lowest layer first."""
    import pathlib

    here = pathlib.Path(__file__).parent
    rows = ["| folder / module | layer |", "|---|---|"]
    for layer in LAYERS:
        shown = [f"`{name}/`" if (here / name).is_dir() else f"`{name}.py`"
                 for name in layer.names]
        rows.append(f"| {', '.join(shown)} | {layer.role} |")
    return "\n".join(rows)
