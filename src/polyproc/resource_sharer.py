"""Hand file descriptors to other processes through pickling, as in
:mod:`multiprocessing.resource_sharer`.

A :class:`DupFd` holds its own duplicate of a descriptor; whichever process unpickles it
gets a duplicate of its own, whatever carried the pickle:

* the start of a process (spawn, forkserver): the descriptor travels with the start
  request itself;
* anything later (a :class:`~polyproc.connection.Connection`, a queue, a plain
  ``pickle.dumps``): the sender's fd server, a daemon thread serving a Unix socket, hands
  the descriptor over ``SCM_RIGHTS`` to the receiver that presents the one-use key the
  pickle carries. The sender must still be alive when the receiver unpickles.

:func:`stop` shuts this process's fd server down; the next offer starts a new one.
"""

from __future__ import annotations

import os
import socket
import threading

from ._wire import _fd_sharing
from ._wire._fd_sharing import SharedDescriptor

__all__ = ["DupFd", "stop"]


class DupFd:
    """A duplicate of descriptor *fd* that pickles into a duplicate for the receiver.

    The object owns its duplicate (closed when the object is collected) until
    :meth:`detach` hands it to the caller.

    Raises:
        OSError: *fd* is not an open descriptor (``EBADF``).
    """

    __slots__ = ("_descriptor",)

    def __init__(self, fd: int) -> None:
        # The duplicate is made now, as the standard library does: the caller may close
        # *fd* as soon as this returns, before the object is pickled.
        self._descriptor = SharedDescriptor(os.dup(fd))

    def detach(self) -> int:
        """Return the descriptor, which the caller now owns (and must close).

        Raises:
            ValueError: it was already detached.
        """
        fd = self._descriptor.fd
        if fd < 0:
            raise ValueError("the descriptor of this DupFd was already detached")
        self._descriptor.fd = -1  # no longer closed with this object
        return fd

    def __reduce__(self) -> tuple[object, tuple[SharedDescriptor]]:
        # The SharedDescriptor inside knows both ways to travel: a process start passes
        # its descriptor with the request, anything else goes through the fd server.
        if self._descriptor.fd < 0:
            raise ValueError("cannot pickle a DupFd whose descriptor was detached")
        return _rebuild_dupfd, (self._descriptor,)

    def __repr__(self) -> str:
        return f"<polyproc.resource_sharer.DupFd fd={self._descriptor.fd}>"


def _rebuild_dupfd(descriptor: SharedDescriptor) -> DupFd:
    dupfd = DupFd.__new__(DupFd)
    dupfd._descriptor = descriptor  # already this process's own duplicate
    return dupfd


def stop(timeout: float | None = None) -> None:
    """Stop this process's fd server, waiting up to *timeout* seconds for its thread.

    Descriptors offered and not yet taken are closed: a pickle made before the call can
    no longer be unpickled (its receiver gets ``OSError``). The next :class:`DupFd`,
    connection or socket pickled for another process starts a new server. Does nothing
    if no server runs in this process. Never raises.
    """
    # _fd_sharing has no stop of its own: take its server out of service here, under the
    # lock it uses to create one, so that a concurrent offer starts a fresh server.
    with _fd_sharing._server_lock:
        server = _fd_sharing._server
        if server is None or _fd_sharing._server_pid != os.getpid():
            return
        _fd_sharing._server = None
    listener = server._listener
    try:
        # On Linux, shutdown() wakes the thread blocked in accept(), which then ends.
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()
    name = f"polyproc-fd-server-{os.getpid()}"
    for thread in threading.enumerate():
        if thread.name == name and thread is not threading.current_thread():
            thread.join(timeout)
    with server._lock:
        offers, server._offers = server._offers, {}
    for fd in offers.values():
        os.close(fd)
