"""Listener and Client: connections between unrelated processes over sockets.

Addresses follow :mod:`multiprocessing.connection`: a ``(host, port)`` tuple is
``AF_INET`` (``AF_INET6`` when the host contains a colon), a string is an ``AF_UNIX``
path (a leading NUL byte selects Linux's abstract namespace). A listener without an
address gets a Unix socket in a fresh private directory, readable only by its user.
"""

from __future__ import annotations

import os
import socket

from ..exceptions import AuthenticationError
from ._auth import HANDSHAKE_TIMEOUT_S, authenticate_accepted, authenticate_connecting
from ._connection import Connection

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any

__all__ = ["Client", "Listener", "address_type"]

Address = str | tuple[str, int] | bytes


def address_type(address: Any) -> str:
    """The family name (``'AF_INET'``, ``'AF_INET6'``, ``'AF_UNIX'``) of *address*.

    Raises:
        ValueError: *address* is of no known form.
    """
    if isinstance(address, tuple):
        return "AF_INET6" if ":" in str(address[0]) else "AF_INET"
    if isinstance(address, str) and address.startswith("\\\\"):
        return "AF_PIPE"  # a Windows named pipe: refused below on this platform
    if isinstance(address, str | bytes):
        return "AF_UNIX"
    raise ValueError(f"address type of {address!r} unrecognized")


def _private_directory() -> str:
    """A new directory only this user can enter, in $TMPDIR (or /tmp).

    Made by hand rather than with tempfile: a manager's server forked from a parent that
    never imported tempfile would otherwise spend milliseconds importing it at start.
    """
    base = os.environ.get("TMPDIR") or "/tmp"
    while True:
        path = os.path.join(base, f"polyproc-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def _no_delay(sock: socket.socket) -> None:
    """Send small messages at once on TCP: the handshake and the first request are
    back-to-back small writes, which Nagle's algorithm would hold for a delayed ACK (about
    40 ms per new connection)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _check_family(family: str) -> None:
    if family not in ("AF_INET", "AF_INET6", "AF_UNIX"):
        raise ValueError(f"Family {family} is not recognized or not available on this platform")


def _check_authkey(authkey: Any) -> bytes | None:
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
    return authkey


class Listener:
    """A bound, listening socket whose :meth:`accept` returns :class:`Connection` objects.

    With an *authkey*, every accepted connection must pass the HMAC handshake before
    ``accept`` returns it; *handshake_timeout* (seconds, a polyproc extension) bounds how
    long a peer may take, so a silent peer cannot hold the listener. *ssl_context* (a
    polyproc extension: a server-side ``ssl.SSLContext``) runs TLS on every accepted
    connection first.
    """

    def __init__(
        self,
        address: Address | None = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._authkey = _check_authkey(authkey)
        self._handshake_timeout = handshake_timeout
        self._ssl_context = ssl_context
        family = family or (address_type(address) if address is not None else "AF_UNIX")
        _check_family(family)
        self._private_dir: str | None = None
        if address is None:
            if family == "AF_UNIX":
                self._private_dir = _private_directory()
                address = os.path.join(self._private_dir, "listener")
            else:
                address = ("::1", 0) if family == "AF_INET6" else ("127.0.0.1", 0)
        self._family = family
        self._socket: socket.socket | None = socket.socket(getattr(socket, family))
        try:
            self._socket.setblocking(True)
            if family != "AF_UNIX":
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(address)
            self._socket.listen(backlog)
        except BaseException:
            self._socket.close()
            self._remove_private_dir()
            raise
        self._address: Any = self._socket.getsockname()
        self._unlink_path = address if family == "AF_UNIX" and isinstance(address, str) else None
        if self._unlink_path and self._unlink_path.startswith("\0"):
            self._unlink_path = None
        self._last_accepted: Any = None

    @property
    def address(self) -> Any:
        """The address this listener is bound to (with the real port if 0 was asked)."""
        return self._address

    @property
    def last_accepted(self) -> Any:
        """The address of the last accepted peer, or ``None``."""
        return self._last_accepted

    def accept(self) -> Connection:
        """Wait for a peer, authenticate it if an authkey was given, and connect.

        Raises:
            OSError: the listener is closed.
            AuthenticationError: the peer failed the handshake; the listener stays
                usable for the next ``accept``.
        """
        if self._socket is None:
            raise OSError("listener is closed")
        sock, self._last_accepted = self._socket.accept()
        sock.setblocking(True)
        _no_delay(sock)
        conn = Connection(sock.detach())
        if self._ssl_context is not None:
            from ._tls import secure  # only TLS users pay for importing ssl

            conn = secure(conn, self._ssl_context, server_side=True,
                          timeout=self._handshake_timeout)
        if self._authkey is not None:
            try:
                authenticate_accepted(conn, self._authkey, self._handshake_timeout)
            except (AuthenticationError, OSError):
                conn.close()
                raise
        return conn

    def close(self) -> None:
        """Stop listening and remove the socket file. Idempotent."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
            if self._unlink_path:
                try:
                    os.unlink(self._unlink_path)
                except OSError:
                    pass
            self._remove_private_dir()

    def _remove_private_dir(self) -> None:
        if self._private_dir is not None:
            try:
                os.rmdir(self._private_dir)  # empty once the socket file is unlinked
            except OSError:
                pass
            self._private_dir = None

    def fileno(self) -> int:
        """The listening socket's descriptor (for ``wait``)."""
        if self._socket is None:
            raise OSError("listener is closed")
        return self._socket.fileno()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_socket", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<polyproc.connection.Listener address={self._address!r}>"


def Client(
    address: Address,
    family: str | None = None,
    authkey: bytes | None = None,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Connection:
    """Connect to the :class:`Listener` at *address* and return a :class:`Connection`.

    *ssl_context* (a polyproc extension: a client-side ``ssl.SSLContext``) runs TLS
    first; *server_hostname* is the name to check the server's certificate against
    (default: the host of *address*).

    Raises:
        ssl.SSLError: the TLS handshake failed.
        OSError: nothing listens there.
        AuthenticationError: the keys differ or the listener misbehaved.
    """
    authkey = _check_authkey(authkey)
    family = family or address_type(address)
    _check_family(family)
    sock = socket.socket(getattr(socket, family))
    try:
        sock.connect(address)
        sock.setblocking(True)  # whatever socket.setdefaulttimeout() says
        _no_delay(sock)
    except BaseException:
        sock.close()
        raise
    conn = Connection(sock.detach())
    if ssl_context is not None:
        from ._tls import secure  # only TLS users pay for importing ssl

        if server_hostname is None and isinstance(address, tuple):
            server_hostname = address[0]
        conn = secure(conn, ssl_context, server_side=False, server_hostname=server_hostname,
                      timeout=handshake_timeout)
    if authkey is not None:
        try:
            authenticate_connecting(conn, authkey, handshake_timeout)
        except BaseException:
            conn.close()
            raise
    return conn
