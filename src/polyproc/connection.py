"""Connections between processes, as in :mod:`multiprocessing.connection`.

``Pipe()`` gives two connected ends; ``Listener``/``Client`` connect unrelated
processes over Unix or TCP sockets, authenticated with an HMAC-SHA256 handshake when an
*authkey* is given; ``wait`` blocks on many connections, sockets and sentinels at once.
"""

from __future__ import annotations

from ._wire._auth import CHALLENGE, FAILURE, WELCOME, answer_challenge, deliver_challenge
from ._wire._connection import Connection, make_pipe, wait
from ._wire._listener import Client, Listener, address_type

__all__ = [
    "CHALLENGE",
    "FAILURE",
    "WELCOME",
    "Client",
    "Connection",
    "Listener",
    "Pipe",
    "address_type",
    "answer_challenge",
    "deliver_challenge",
    "wait",
]


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two connected :class:`Connection` objects; the first only receives unless *duplex*."""
    return make_pipe(duplex)
