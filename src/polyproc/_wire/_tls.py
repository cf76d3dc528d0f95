"""TLS for connections between machines: a relay thread encrypts what a Connection sends.

:func:`secure` runs the TLS handshake on a connected socket and returns a new
:class:`~polyproc._wire._connection.Connection` on one end of a local socket pair; a relay
thread carries bytes between the other end and the TLS socket, encrypting and decrypting.
Everything above (the HMAC handshake, framing, pickling) is unchanged and unaware of TLS;
TLS adds confidentiality and, with client certificates (``ssl.CERT_REQUIRED`` on the
server's context), mutual authentication of the machines, on top of the authkey.

TLS authenticates the peer; it does not make unpickling safe: a peer that passes both the
TLS and the HMAC checks is trusted to send pickles, as with any polyproc connection.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading

from .._os._threads import mark_internal
from ._connection import Connection

__all__ = ["secure"]

_CHUNK = 256 * 1024
_BUFFER_CAP = 4 * 1024 * 1024  # per direction, before the relay stops reading that side


def secure(
    conn: Connection,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    timeout: float = 5.0,
) -> Connection:
    """Run TLS on *conn*'s socket (which this call takes over) and return a Connection
    that speaks through it.

    Raises:
        ssl.SSLError: the handshake failed (a bad certificate, a peer without TLS...).
        OSError: the peer went away, or the handshake took longer than *timeout*.
    """
    raw = socket.socket(fileno=os.dup(conn.fileno()))
    conn.close()
    raw.settimeout(timeout)
    try:
        tls = context.wrap_socket(raw, server_side=server_side, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    inner, outer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    mark_internal(threading.Thread(target=_relay, args=(tls, outer),
                                   name="polyproc-tls-relay", daemon=True)).start()
    inner.setblocking(True)
    return Connection(inner.detach())


def _relay(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Carry bytes both ways until either side closes, then close the other."""
    tls.setblocking(False)
    plain.setblocking(False)
    to_tls = bytearray()
    to_plain = bytearray()
    tls_open = plain_open = True
    try:
        while (tls_open or to_plain) and (plain_open or to_tls):
            readers: list[socket.socket] = []
            if tls_open and len(to_plain) < _BUFFER_CAP:
                readers.append(tls)
            if plain_open and len(to_tls) < _BUFFER_CAP:
                readers.append(plain)
            writers: list[socket.socket] = []
            if to_tls:
                writers.append(tls)
            if to_plain:
                writers.append(plain)
            readable: list[socket.socket]
            writable: list[socket.socket]
            if tls_open and tls.pending():
                readable, writable = [tls], writers  # decrypted bytes already waiting
            else:
                readable, writable, _ = select.select(readers, writers, [])
            if tls in readable:
                tls_open = _read_tls(tls, to_plain)
            if plain in readable:
                try:
                    data = plain.recv(_CHUNK)
                except BlockingIOError:
                    data = None
                if data:
                    to_tls += data
                elif data is not None:
                    plain_open = False
            if tls in writable and to_tls:
                try:
                    del to_tls[: tls.send(to_tls)]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
            if plain in writable and to_plain:
                try:
                    del to_plain[: plain.send(to_plain)]
                except BlockingIOError:
                    pass
            if not tls_open and not to_plain:
                break
    except OSError:
        pass  # either side failed: closing both tells the other
    finally:
        tls.close()
        plain.close()


def _read_tls(tls: ssl.SSLSocket, into: bytearray) -> bool:
    """Read what the TLS socket has; False once it is closed."""
    try:
        data = tls.recv(_CHUNK)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return True
    except (OSError, ssl.SSLError):
        return False
    if not data:
        return False
    into += data
    return True
