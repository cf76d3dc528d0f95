"""The one object that holds this interpreter's process-wide state.

Instead of globals scattered over modules, everything that is per-process lives on
:data:`runtime`: the current process object, its parent, the children it started, the
default start method, the fork server handle. A child replaces it wholesale in
:meth:`Runtime.become_child`, so nothing of the parent's bookkeeping leaks into a forked
child.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ALL_START_METHODS", "Runtime", "default_start_method", "runtime"]

ALL_START_METHODS = ("fork", "spawn", "forkserver")


def default_start_method() -> str:
    """The start method the running Python's multiprocessing uses by default on Linux."""
    return "forkserver" if sys.version_info >= (3, 14) else "fork"


class Runtime:
    """Per-interpreter process state; see the module docstring."""

    def __init__(self) -> None:
        self.current: Any = None  # the BaseProcess for this process; set by _process
        self.parent: Any = None  # a ParentProcess in a child, None in the main process
        self.children: set[Any] = set()
        self.counter = itertools.count(1)
        self.start_method: str | None = None
        self.executable = sys.executable
        # True while a spawned child imports the parent's main module: starting a process
        # then means the script lacks `if __name__ == "__main__":` (a fork bomb).
        self.bootstrapping = False
        self.forkserver: Any = None
        self.forkserver_preload: list[str] = ["__main__"]
        # Returns the default context's concrete context; installed by polyproc.context,
        # so that lower layers (the pool) can default to it without importing the facade.
        self.default_context: Any = None
        self.lock = threading.RLock()
        # start method name -> launcher; filled in by _launch when the layer is imported.
        self.launchers: dict[str, Any] = {}
        self._self_handle: tuple[int, int] | None = None

    def self_handle(self) -> int:
        """A pidfd of this very process, shared with every child so each can watch us."""
        pid = os.getpid()
        handle = self._self_handle
        if handle is None or handle[0] != pid:
            with self.lock:
                handle = self._self_handle
                if handle is None or handle[0] != pid:
                    handle = (pid, os.pidfd_open(pid))
                    self._self_handle = handle
        return handle[1]

    def become_child(self, current: Any, parent: Any) -> None:
        """Reset the state inherited from the parent: we are now *current*."""
        self.current = current
        self.parent = parent
        self.lock = threading.RLock()  # a parent thread may have held it at fork time
        self.children = set()
        self.counter = itertools.count(1)
        self.forkserver = None
        self._self_handle = None
        self.bootstrapping = False


runtime = Runtime()
