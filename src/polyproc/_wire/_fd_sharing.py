"""Hand a file descriptor to whichever process unpickles an object that holds it.

A process start carries descriptors by itself (see ``_pickling.TransferPickler``). For a
connection or socket sent later, over a pipe or a queue, the sender *offers* a duplicate
of the descriptor here and pickles only ``(address, key)``; the receiver connects to the
sender's fd server, presents the key, and receives the descriptor over ``SCM_RIGHTS``.

The fd server is one daemon thread per process, started on the first offer. It listens on
a Unix socket in Linux's abstract namespace (nothing on disk to clean up), serves only
peers of the same user id, and hands each offer out once: the key, 32 random bytes, is the
capability. The sender must still be alive when the receiver unpickles, as with
multiprocessing's own resource sharer.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import weakref

from .._os._threads import mark_internal
from . import _pickling

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["SharedDescriptor", "fetch_fd", "offer_fd"]

_KEY_BYTES = 32
_CREDS = struct.Struct("3i")
_SERVE_TIMEOUT_S = 5.0


class _FdServer:
    def __init__(self) -> None:
        self.address = f"\0polyproc-fds-{os.getpid()}-{os.urandom(8).hex()}"
        self._offers: dict[bytes, int] = {}
        self._standing: set[bytes] = set()  # offers taken any number of times
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.settimeout(None)  # whatever socket.setdefaulttimeout() says
        self._listener.bind(self.address)
        self._listener.listen(64)
        self._uid = os.getuid()
        thread = threading.Thread(
            target=self._serve, name=f"polyproc-fd-server-{os.getpid()}", daemon=True
        )
        mark_internal(thread).start()

    def offer(self, fd: int, *, standing: bool = False) -> bytes:
        key = os.urandom(_KEY_BYTES)
        with self._lock:
            self._offers[key] = os.dup(fd)
            if standing:
                self._standing.add(key)
        return key

    def withdraw(self, key: bytes) -> None:
        with self._lock:
            fd = self._offers.pop(key, None)
            self._standing.discard(key)
        if fd is not None:
            os.close(fd)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                try:
                    self._serve_one(conn)
                except OSError:
                    pass  # a peer that vanished or misbehaved costs only its own request

    def _serve_one(self, conn: socket.socket) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDS.size)
        if _CREDS.unpack(creds)[1] != self._uid:
            return
        conn.settimeout(_SERVE_TIMEOUT_S)
        key = b""
        while len(key) < _KEY_BYTES:
            chunk = conn.recv(_KEY_BYTES - len(key))
            if not chunk:
                return
            key += chunk
        with self._lock:
            standing = key in self._standing
            fd = self._offers.get(key) if standing else self._offers.pop(key, None)
            if standing and fd is not None:
                fd = os.dup(fd)  # the offer stays; this request gets its own copy
        if fd is None:
            conn.sendall(b"n")
            return
        try:
            socket.send_fds(conn, [b"y"], [fd])
        finally:
            os.close(fd)


_server: _FdServer | None = None
_server_pid = -1
_server_lock = threading.Lock()


# owner -> (server, key) of its standing offer (see offer_fd's *owner*).
_standing_offers: weakref.WeakKeyDictionary[object, tuple[_FdServer, bytes]] = (
    weakref.WeakKeyDictionary()
)


def offer_fd(fd: int, *, owner: object = None) -> tuple[str, bytes]:
    """Offer a duplicate of *fd* to one future :func:`fetch_fd`; returns (address, key).

    With *owner* (an object that can be weakly referenced, which holds *fd*), the offer
    *stands*: any number of fetches may take it, for as long as *owner* lives in this
    process, and every pickling of *owner* shares it. A pickle made once and unpickled
    several times (a pool task run again after its worker died) then works every time.
    """
    global _server, _server_pid
    with _server_lock:
        if _server is None or _server_pid != os.getpid():  # a forked child needs its own
            _server, _server_pid = _FdServer(), os.getpid()
        server = _server
        if owner is None:
            return server.address, server.offer(fd)
        known = _standing_offers.get(owner)
        if known is not None and known[0] is server:  # not a stopped or inherited server
            return server.address, known[1]
        key = server.offer(fd, standing=True)
        _standing_offers[owner] = (server, key)
        weakref.finalize(owner, server.withdraw, key)
    return server.address, key


def fetch_fd(address: str, key: bytes) -> int:
    """Receive the descriptor offered under *key* by the process serving *address*.

    Raises:
        OSError: the offering process is gone, or the offer was already taken.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_SERVE_TIMEOUT_S)  # not socket.setdefaulttimeout()'s value
        conn.connect(address)
        conn.sendall(key)
        _msg, fds, _flags, _addr = socket.recv_fds(conn, 1, 1)
    if not fds:
        raise OSError("the descriptor offered with this object was already taken or withdrawn")
    return fds[0]


def _reset_after_fork() -> None:
    global _server_lock
    _server_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


class SharedDescriptor:
    """A descriptor that pickles so that the receiving process gets its own duplicate.

    At a process start the descriptor travels with the start request; later, through this
    process's fd server. Closing is explicit (:meth:`close`) or at garbage collection.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        """Close the descriptor; idempotent."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    def __reduce__(self) -> tuple[object, tuple[str, bytes]]:
        return _rebuild_descriptor, offer_fd(self.fd)

    def __repr__(self) -> str:
        return f"<SharedDescriptor fd={self.fd}>"


def _rebuild_descriptor(address: str, key: bytes) -> SharedDescriptor:
    return SharedDescriptor(fetch_fd(address, key))


def _export_descriptor(desc: SharedDescriptor, add_fd: Callable[[int], int]) -> int:
    return add_fd(desc.fd)


def _import_descriptor(index: int, fds: list[int]) -> SharedDescriptor:
    return SharedDescriptor(os.dup(fds[index]))


_pickling.register_transfer(SharedDescriptor, _export_descriptor, _import_descriptor)
