"""Start a process from the fork server, as in :mod:`multiprocessing.popen_forkserver`.

The server is started on first use (see :mod:`polyproc.forkserver`). The sentinel is the
connection to the server, which reports the child's exit status on it.
"""

from __future__ import annotations

from .popen_spawn_posix import DupFd
from .popen_spawn_posix import Popen as _SpawnPopen

__all__ = ["DupFd", "Popen"]


class Popen(_SpawnPopen):
    """Start *process_obj* from the fork server (see :class:`polyproc.popen_fork.Popen`).

    Unlike the standard library, :meth:`duplicate_for_child` returns the descriptor
    itself, not an index: :attr:`DupFd` carries it to the child either way.
    """

    method = "forkserver"
