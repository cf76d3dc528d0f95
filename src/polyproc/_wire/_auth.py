"""Mutual authentication of a fresh connection with a shared secret (the authkey).

Each side proves it knows the key without sending it: the verifier sends a random
32-byte challenge, the prover answers with ``HMAC-SHA256(key, challenge)``, and the
verifier compares in constant time, then says ``WELCOME`` or ``FAILURE``. The accepting
side verifies first, then the roles swap, so both sides know the other holds the key.

Before this completes nothing is unpickled: the handshake moves raw bytes only, every
message is at most :data:`MAX_HANDSHAKE_MESSAGE` bytes, and every read has a deadline, so
a silent or garbage-sending peer costs at most the handshake timeout.
"""

from __future__ import annotations

import os
import time

from .._os._wait import wait_readable
from ..exceptions import AuthenticationError
from ._connection import Connection

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CHALLENGE",
    "FAILURE",
    "HANDSHAKE_TIMEOUT_S",
    "WELCOME",
    "answer_challenge",
    "authenticate_accepted",
    "authenticate_connecting",
    "deliver_challenge",
]

HANDSHAKE_TIMEOUT_S = 5.0
MAX_HANDSHAKE_MESSAGE = 256

_CHALLENGE = b"#POLYPROC-CHALLENGE-1#"
_WELCOME = b"#WELCOME#"
_FAILURE = b"#FAILURE#"
# The message prefixes, under the names multiprocessing.connection gives them.
CHALLENGE, WELCOME, FAILURE = _CHALLENGE, _WELCOME, _FAILURE
_NONCE_BYTES = 32


def authenticate_accepted(conn: Connection, authkey: bytes, timeout: float) -> None:
    """Run the handshake on the accepting (listener) side.

    Raises:
        AuthenticationError: the peer does not hold *authkey*, sent something that is
            not part of the handshake, or did not answer within *timeout* seconds.
    """
    deadline = time.monotonic() + timeout
    _verify_peer(conn, authkey, deadline)
    _prove_to_peer(conn, authkey, deadline)


def authenticate_connecting(conn: Connection, authkey: bytes, timeout: float) -> None:
    """Run the handshake on the connecting (client) side; raises as the accepting side."""
    deadline = time.monotonic() + timeout
    _prove_to_peer(conn, authkey, deadline)
    _verify_peer(conn, authkey, deadline)


def _digest(authkey: bytes, nonce: bytes) -> bytes:
    # hashlib loads OpenSSL (~2 ms): imported on first handshake, not by every child.
    import hashlib
    import hmac

    return hmac.new(authkey, nonce, hashlib.sha256).digest()


def _same_digest(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


def _verify_peer(conn: Any, authkey: bytes, deadline: float | None) -> None:
    nonce = os.urandom(_NONCE_BYTES)
    conn.send_bytes(_CHALLENGE + nonce)
    answer = _recv(conn, deadline)
    if _same_digest(answer, _digest(authkey, nonce)):
        conn.send_bytes(_WELCOME)
        return
    conn.send_bytes(_FAILURE)
    raise AuthenticationError("digest received was wrong: the peer has another authkey")


def _prove_to_peer(conn: Any, authkey: bytes, deadline: float | None) -> None:
    challenge = _recv(conn, deadline)
    if not challenge.startswith(_CHALLENGE) or len(challenge) != len(_CHALLENGE) + _NONCE_BYTES:
        raise AuthenticationError(f"expected an authentication challenge, got {challenge[:40]!r}")
    conn.send_bytes(_digest(authkey, challenge[len(_CHALLENGE) :]))
    verdict = _recv(conn, deadline)
    if verdict != _WELCOME:
        raise AuthenticationError("digest sent was rejected: the peer has another authkey")


def _recv(conn: Any, deadline: float | None) -> bytes:
    """One handshake message: under *deadline* on a real connection, or as the duck-typed
    connection's ``recv_bytes(maxlength)`` gives it (the public half-handshakes)."""
    if deadline is not None and isinstance(conn, Connection):
        return _recv_bounded(conn, deadline)
    try:
        return bytes(conn.recv_bytes(MAX_HANDSHAKE_MESSAGE))
    except EOFError:
        raise AuthenticationError("the peer closed the connection during authentication") from None
    except OSError as exc:
        raise AuthenticationError(f"invalid authentication message: {exc}") from None


def _recv_bounded(conn: Connection, deadline: float) -> bytes:
    """Read one frame of at most MAX_HANDSHAKE_MESSAGE bytes, every read under *deadline*.

    Each ``os.read`` follows a successful poll, so it returns at once with whatever has
    arrived: a peer that sends half a frame and stops cannot block us past the deadline.
    """
    fd = conn.fileno()
    header = _read_before(fd, 4, deadline)
    size = int.from_bytes(header, "big", signed=True)
    if not 0 <= size <= MAX_HANDSHAKE_MESSAGE:
        raise AuthenticationError(f"invalid authentication message length {size}")
    return _read_before(fd, size, deadline)


def _read_before(fd: int, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not wait_readable([fd], remaining):
            raise AuthenticationError(
                "the peer did not complete the authentication handshake in time"
            )
        try:
            chunk = os.read(fd, size - len(data))
        except OSError as exc:
            raise AuthenticationError(f"connection failed during authentication: {exc}") from None
        if not chunk:
            raise AuthenticationError("the peer closed the connection during authentication")
        data += chunk
    return data


def deliver_challenge(connection: Any, authkey: bytes) -> None:
    """Challenge the peer of *connection* to prove it holds *authkey* (one direction).

    The public half-handshake of :mod:`multiprocessing.connection`; the peer calls
    :func:`answer_challenge`. *connection* needs only ``send_bytes`` and
    ``recv_bytes(maxlength)``.

    Raises:
        AuthenticationError: the peer's answer was wrong or malformed.
    """
    _verify_peer(connection, authkey, None)


def answer_challenge(connection: Any, authkey: bytes) -> None:
    """Answer the challenge of :func:`deliver_challenge` with *authkey*.

    Raises:
        AuthenticationError: the peer rejected the answer, or sent no proper challenge.
    """
    _prove_to_peer(connection, authkey, None)
