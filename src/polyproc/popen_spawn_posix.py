"""Start a process as a fresh interpreter, as in :mod:`multiprocessing.popen_spawn_posix`.

The process object is pickled (with the preparation data) before the child exists, while
:func:`polyproc.context.get_spawning_popen` returns this Popen, so objects that may only
travel to a child being started (``context.assert_spawning``) can tell.
"""

from __future__ import annotations

import os

from . import context
from ._process._process import BaseProcess
from ._wire._fd_sharing import SharedDescriptor
from .popen_fork import Popen as _ForkPopen

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["DupFd", "Popen"]


class DupFd:
    """A descriptor on its way to a child: pickle it, then :meth:`detach` it over there.

    Holds a duplicate of the descriptor. Pickled for a process start it travels with the
    start request; pickled any other way, through this process's descriptor server.

    Raises:
        OSError: *fd* is not an open descriptor.
    """

    def __init__(self, fd: int) -> None:
        self._descriptor = SharedDescriptor(os.dup(fd))
        # Made while a Popen pickles its process object, this wrapper is garbage as soon
        # as the pickler is done, before the descriptor reaches the child: the Popen
        # keeps the duplicate open until the launch is over.
        popen = context.get_spawning_popen()
        if isinstance(popen, Popen):
            popen._in_flight.append(self._descriptor)

    def detach(self) -> int:
        """The descriptor, now owned by the caller (once; later calls return -1)."""
        fd, self._descriptor.fd = self._descriptor.fd, -1
        return fd


class Popen(_ForkPopen):
    """Start *process_obj* in a fresh interpreter (see :class:`polyproc.popen_fork.Popen`)."""

    method = "spawn"
    DupFd = DupFd

    def __init__(self, process_obj: BaseProcess) -> None:
        self._fds: list[int] = []
        self._in_flight: list[SharedDescriptor] = []
        super().__init__(process_obj)

    def _launch(self, process_obj: BaseProcess) -> Any:
        context.set_spawning_popen(self)
        try:
            return super()._launch(process_obj)
        finally:
            context.set_spawning_popen(None)
            # The child has its copies now (or never will).
            for descriptor in self._in_flight:
                descriptor.close()
            self._in_flight.clear()

    def duplicate_for_child(self, fd: int) -> int:
        """Record *fd* for the child; wrap the result in :attr:`DupFd` to send it."""
        self._fds.append(fd)
        return fd
