"""Linux's parent-death signal: the kernel kills a child the moment its parent dies.

``prctl(PR_SET_PDEATHSIG)`` costs a microsecond and no thread, which is why a forked
child uses it. Two limits decide where it applies: the signal fires when the *thread*
that forked the child ends (so it is only safe when the main thread starts the process),
and a fresh interpreter would have to import ctypes to call it (so spawned children
watch their parent with a thread instead).
"""

from __future__ import annotations

import sys

__all__ = ["prepare", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1
_libc = None


def prepare() -> bool:
    """Load libc's prctl now, in the parent, so forked children call it for free.

    Returns False where the call does not exist (not Linux).
    """
    global _libc
    if _libc is None and sys.platform == "linux":
        import ctypes  # once per parent; forked children inherit it loaded

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc is not None


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send *signum* to this process when its parent thread dies.

    Returns False if it could not be set (call :func:`prepare` in the parent first).
    """
    if _libc is None:
        return False
    return int(_libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
