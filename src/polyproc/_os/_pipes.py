"""Small helpers on pipe descriptors."""

from __future__ import annotations

import os

__all__ = ["read_available"]


def read_available(fd: int) -> bytes:
    """Everything that can be read from *fd* right now, without blocking."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
