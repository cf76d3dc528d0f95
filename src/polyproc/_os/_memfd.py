"""Anonymous shared memory the kernel frees with its last user.

A :class:`Segment` is a ``memfd`` mapped ``MAP_SHARED``: a forked child shares it through
the inherited mapping, any other process by receiving the descriptor. There is no name in
/dev/shm, so nothing is left behind however its users die.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["Segment"]


class Segment:
    """A shared mapping of *size* bytes backed by a memfd.

    With *fd* given, maps that existing memfd (received from another process) instead of
    creating one; the segment then owns *fd*. ``token`` identifies the segment across
    processes so a receiver maps it only once.
    """

    __slots__ = ("__weakref__", "fd", "map", "size", "token")

    def __init__(self, size: int, fd: int | None = None, token: bytes | None = None) -> None:
        if size <= 0:
            raise ValueError("a segment needs a positive size")
        if fd is None:
            fd = os.memfd_create("polyproc", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                raise
        self.fd = fd
        self.size = size
        self.token = token if token is not None else os.urandom(16)
        self.map = mmap.mmap(fd, size)

    def close(self) -> None:
        """Unmap and close; the memory lives on while another process maps it."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        self.map.close()

    def __repr__(self) -> str:
        return f"<Segment {self.token.hex()[:8]} size={self.size}>"
