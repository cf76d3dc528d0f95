"""Pickling for processes, as in :mod:`multiprocessing.reduction`.

:class:`ForkingPickler` pickles with polyproc's own table of reducers, so
``ForkingPickler.register(T, reduce)`` (or :func:`register`) changes how *every* polyproc
pickler handles instances of ``T``: the arguments of a process started with spawn or the
fork server, queue items, :meth:`Connection.send <polyproc.connection.Connection.send>`
and pool tasks. A registration holds in the process that made it (a spawned child that
needs it too makes it again, typically at import of the module that defines ``T``).

Descriptors: :class:`DupFd` pickles into a duplicate for the receiving process;
:func:`send_handle` and :func:`recv_handle` pass one directly over a
:class:`~polyproc.connection.Connection` that is a Unix socket (``Pipe()`` with the default
``duplex=True``, or a ``Listener``/``Client`` pair on a Unix address).
"""

from __future__ import annotations

import array
import io
import os
import pickle
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from ._wire import _pickling
from .resource_sharer import DupFd

__all__ = [
    "ACKNOWLEDGE",
    "HAVE_SEND_HANDLE",
    "AbstractReducer",
    "DupFd",
    "ForkingPickler",
    "dump",
    "recv_handle",
    "recvfds",
    "register",
    "send_handle",
    "sendfds",
]

HAVE_SEND_HANDLE = True
# Whether sendfds waits for the receiver's b"A": never needed on Linux, where the sender
# may close its descriptors as soon as sendmsg returns.
ACKNOWLEDGE = False


class ForkingPickler(pickle.Pickler):
    """A pickler that uses polyproc's reducers (and those added with :meth:`register`).

    Construct it as :class:`pickle.Pickler` (``ForkingPickler(file, protocol)``); it
    raises what :class:`pickle.Pickler` raises (``pickle.PicklingError``, ``TypeError``...)
    for an object that cannot be pickled.
    """

    # The registrations made through this class, as the standard library keeps them (they
    # also go to polyproc's own table, which is what every polyproc pickler consults).
    _extra_reducers: ClassVar[dict[type, Callable[[Any], Any]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A copy per pickler, as the standard library makes: changing one pickler's table
        # changes no other pickler. (Assigned after __init__, it sets the C pickler's own
        # table; a class attribute would hide that slot.)
        self.dispatch_table = dict(_pickling.reducer_table())

    @classmethod
    def register(cls, type: type, reduce: Callable[[Any], Any]) -> None:
        """Reduce instances of *type* with *reduce* in every polyproc pickler.

        *reduce(obj)* returns what ``__reduce__`` would (a callable and its arguments).
        Instances of subclasses of *type* are not affected, as with ``copyreg``.
        """
        cls._extra_reducers[type] = reduce
        _pickling.register_reducer(type, reduce)

    @classmethod
    def dumps(cls, obj: Any, protocol: int | None = None) -> memoryview:
        """Pickle *obj*; return the bytes as a memoryview.

        Raises:
            pickle.PicklingError: (or ``TypeError``, ``AttributeError``) *obj* or
                something inside it cannot be pickled.
        """
        buf = io.BytesIO()
        cls(buf, protocol).dump(obj)
        return buf.getbuffer()

    loads = staticmethod(pickle.loads)


register = ForkingPickler.register


def dump(obj: Any, file: Any, protocol: int | None = None) -> None:
    """Pickle *obj* into the binary *file* with :class:`ForkingPickler`.

    Raises:
        pickle.PicklingError: as :meth:`ForkingPickler.dumps`.
    """
    ForkingPickler(file, protocol).dump(obj)


def sendfds(sock: socket.socket, fds: list[int]) -> None:
    """Send the descriptors *fds* over the Unix socket *sock* (``SCM_RIGHTS``).

    The receiver gets its own duplicates; *fds* stay open here. One byte of data goes
    with them (the count, modulo 256), which :func:`recvfds` checks.

    Raises:
        OSError: *sock* is not a connected Unix socket, or a descriptor is not open.
    """
    fd_array = array.array("i", fds)
    marker = bytes([len(fd_array) % 256])
    sock.sendmsg([marker], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd_array)])
    if ACKNOWLEDGE and sock.recv(1) != b"A":  # pragma: no cover - off on Linux
        raise RuntimeError("did not receive acknowledgement of the descriptors")


def recvfds(sock: socket.socket, size: int) -> list[int]:
    """Receive the *size* descriptors the peer sent with :func:`sendfds`.

    The caller owns them (they are close-on-exec).

    Raises:
        EOFError: the peer closed the socket first.
        RuntimeError: what arrived is not *size* descriptors sent by :func:`sendfds`
            (any descriptors that did arrive are closed).
        OSError: *sock* is not a Unix socket.
    """
    fd_array = array.array("i")
    msg, ancdata, flags, _addr = sock.recvmsg(
        1, socket.CMSG_SPACE(size * fd_array.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fd_array.itemsize
            fd_array.frombytes(data[:usable])
    fds = list(fd_array)
    if not msg and not fds:
        raise EOFError("the peer closed the socket before sending descriptors")
    if len(fds) != size or msg != bytes([size % 256]) or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(
            f"expected {size} descriptors, received {len(fds)} (marker {msg!r}, flags {flags})"
        )
    if ACKNOWLEDGE:  # pragma: no cover - off on Linux
        sock.send(b"A")
    return fds


def send_handle(conn: Any, handle: int, destination_pid: int) -> None:
    """Send the descriptor *handle* to the process at the other end of *conn*.

    *conn* is a connection over a Unix socket (anything with ``fileno()``); the receiver
    calls :func:`recv_handle` on its end. *destination_pid* is accepted for the standard
    library's signature: Unix does not need it. *handle* stays open here.

    Raises:
        OSError: *conn* is closed or not a Unix socket (a one-way ``Pipe(duplex=False)``
            end is a pipe: ``ENOTSOCK``).
    """
    with _socket_of(conn) as s:
        sendfds(s, [handle])


def recv_handle(conn: Any) -> int:
    """Receive a descriptor sent with :func:`send_handle` on the other end of *conn*.

    Returns the new descriptor, which the caller owns.

    Raises:
        EOFError: the other end closed first.
        RuntimeError: what arrived is not one descriptor sent by :func:`send_handle`.
        OSError: *conn* is closed or not a Unix socket.
    """
    with _socket_of(conn) as s:
        return recvfds(s, 1)[0]


def _socket_of(conn: Any) -> socket.socket:
    """A socket object on a duplicate of *conn*'s descriptor (closing it leaves *conn*
    open)."""
    fd = os.dup(conn.fileno())
    try:
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
    except BaseException:
        os.close(fd)
        raise


class AbstractReducer:
    """The reduction API as a class, for ``context.reducer``.

    A subclass overrides what it needs; the defaults are this module's functions.
    """

    ForkingPickler = ForkingPickler
    register = staticmethod(register)
    dump = staticmethod(dump)
    send_handle = staticmethod(send_handle)
    recv_handle = staticmethod(recv_handle)
    DupFd = DupFd

    def __init__(self, *args: Any) -> None:
        """Accept and ignore *args*, as the standard library's class does."""
