"""Which threads are polyproc's own, and which are the program's.

polyproc runs a few helper threads (the fd server, a pool's manager thread, TLS relays,
a manager server's connection threads). They are written to be safe across a fork; the
program's own threads are not known to be, which is what the fork warning is about.
"""

from __future__ import annotations

import threading

__all__ = ["is_internal", "mark_internal", "program_threads"]

_ATTRIBUTE = "_polyproc_internal"


def mark_internal(thread: threading.Thread) -> threading.Thread:
    """Mark *thread* as one of polyproc's own helper threads; returns it."""
    setattr(thread, _ATTRIBUTE, True)
    return thread


def is_internal(thread: threading.Thread) -> bool:
    """Whether *thread* is one of polyproc's own helper threads."""
    return bool(getattr(thread, _ATTRIBUTE, False))


def program_threads() -> list[threading.Thread]:
    """The live threads of this process other than the calling one and polyproc's own."""
    me = threading.current_thread()
    return [
        thread
        for thread in threading.enumerate()
        if thread is not me and not getattr(thread, _ATTRIBUTE, False) and thread.is_alive()
    ]
