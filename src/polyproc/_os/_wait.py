"""Wait until any of several descriptors is readable, with a deadline."""

from __future__ import annotations

import select
import time

__all__ = ["wait_readable"]

_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


def wait_readable(fds: list[int], timeout: float | None) -> list[int]:
    """Return the descriptors among *fds* that are readable (or closed by the peer).

    Blocks until at least one is ready or *timeout* seconds pass (``None`` waits
    forever, ``0`` only polls); returns an empty list on timeout. A signal handler that
    interrupts the wait does not shorten it.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, _READ_EVENTS)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    while True:
        if deadline is None:
            ms = None
        else:
            remaining = deadline - time.monotonic()
            # poll() takes milliseconds; round up so a short timeout is not a busy loop.
            ms = max(0, int(remaining * 1000 + 0.999))
        ready = poller.poll(ms)
        if ready or (deadline is not None and time.monotonic() >= deadline):
            return [fd for fd, _ in ready]
