"""Child-process functions for the shared memory tests.

Module-level in an importable module so that spawn and the fork server find them by
reference.
"""

from __future__ import annotations

import signal
from typing import Any

from polyproc.shared_memory import ShareableList, SharedMemory


def attach_and_swap(name: str, conn: Any) -> None:
    """Attach *name*, send its first 5 bytes back, then write b"child" there."""
    shm = SharedMemory(name)
    conn.send((bytes(shm.buf[:5]), shm.size))
    shm.buf[:5] = b"child"
    shm.close()
    conn.close()


def use_object(shm: SharedMemory, conn: Any) -> None:
    """Given a SharedMemory object itself, report what it holds and write to it."""
    conn.send((shm.name, shm.size, bytes(shm.buf[:5])))
    shm.buf[:5] = b"CHILD"
    shm.close()
    conn.close()


def create_and_send(conn: Any, payload: bytes) -> None:
    """Create a segment holding *payload*, send its name, close it without unlinking."""
    shm = SharedMemory(create=True, size=len(payload))
    shm.buf[:] = payload
    conn.send(shm.name)
    shm.close()
    conn.close()


def create_and_wait(conn: Any, count: int) -> None:
    """Create *count* segments, send their names, then wait to be killed."""
    segments = [SharedMemory(create=True, size=4096) for _ in range(count)]
    conn.send([s.name for s in segments])
    while True:
        signal.pause()


def edit_list(sl: ShareableList, conn: Any) -> None:
    """Report a ShareableList's contents, then change some of its items."""
    conn.send(list(sl))
    sl[0] = -sl[0]  # type: ignore[operator]
    sl[1] = "children"
    sl[2] = None
    sl.shm.close()
    conn.close()


def attach_list(name: str, conn: Any) -> None:
    """Attach a ShareableList by name and send its contents and format."""
    sl = ShareableList(name=name)
    conn.send((list(sl), sl.format))
    sl[-1] = True
    sl.shm.close()
    conn.close()
