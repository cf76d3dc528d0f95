"""What a manager's clients and its server say to each other, and how a client connects.

After the HMAC handshake (``_wire._auth``: mutual, with a deadline and a size cap, nothing
unpickled before it succeeds), a client sends ``(HELLO, client_id)`` and then requests
``(op, object_id, name, args, kwargs)``; every request gets one reply ``(status, value)``:

* ``RETURN``: *value* is the result;
* ``ERROR``: *value* is the packed exception (see ``_wire._remote_error``), re-raised in the
  client with the server's traceback as its cause;
* ``PROXY``: the result is itself a managed object: *value* is ``(typeid, object_id,
  exposed)``, and the client holds one reference to it.

Connections are pooled per process and manager address, never shared by two threads at
once: a call borrows one, and gives it back when the reply is in. A process's references
are counted by the server under its *client id* (random, new after a fork) and released
when the last connection of that client closes, so a client that dies releases what it
held.
"""

from __future__ import annotations

import os
import threading

from .._process._state import runtime
from .._wire import _pickling
from .._wire._connection import Connection
from .._wire._listener import Client
from .._wire._pickling import register_reducer
from .._wire._remote_error import unpack_exception
from ..exceptions import ProcessError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ManagerGoneError", "call", "client_id"]

HELLO, CALL, CREATE, INCREF, DECREF, GETVALUE, METHODS, SHUTDOWN, INFO, COUNT, DUMMY = range(11)
RETURN, ERROR, PROXY = "#RETURN", "#ERROR", "#PROXY"
#: Largest request or reply a peer may send once authenticated.
MAX_MESSAGE_BYTES = 1 << 30


class ManagerGoneError(ProcessError, ConnectionError):
    """The manager's server process cannot be reached (it exited, or was killed)."""


class PickleCodec:
    """Messages as pickles (the default serializer)."""

    name = "pickle"

    @staticmethod
    def dumps(message: Any) -> bytes:
        """Encode *message*."""
        return _pickling.dumps(message, context="a manager message")

    @staticmethod
    def loads(data: bytes | bytearray | memoryview) -> Any:
        """Decode *data*."""
        return _pickling.loads(data)


class XmlRpcCodec:
    """Messages as XML-RPC (``serializer='xmlrpclib'``): data only, so a peer cannot make
    the other unpickle anything but the packed exceptions it reports; tuples arrive as
    lists and only plain data types travel."""

    name = "xmlrpclib"

    @staticmethod
    def dumps(message: Any) -> bytes:
        """Encode *message*."""
        import xmlrpc.client

        return xmlrpc.client.dumps((message,), methodresponse=True, allow_none=True).encode()

    @staticmethod
    def loads(data: bytes | bytearray | memoryview) -> Any:
        """Decode *data*."""
        import xmlrpc.client

        return xmlrpc.client.loads(bytes(data).decode(), use_builtin_types=True)[0][0]


_CODECS: dict[str, Any] = {"pickle": PickleCodec, "xmlrpclib": XmlRpcCodec}
#: address -> codec of the managers this process knows.
codecs: dict[Any, Any] = {}


def check_serializer(serializer: str) -> Any:
    """The codec of *serializer* (``'pickle'`` or ``'xmlrpclib'``).

    Raises:
        ValueError: an unknown serializer.
    """
    try:
        return _CODECS[serializer]
    except KeyError:
        raise ValueError(
            f"unknown serializer {serializer!r}: 'pickle' or 'xmlrpclib'"
        ) from None


def codec_for(address: Any) -> Any:
    """The codec of the manager at *address* (pickle unless it was made otherwise)."""
    return codecs.get(address, PickleCodec)


def send(conn: Connection, codec: Any, message: Any) -> None:
    """Send *message* on *conn* encoded by *codec*."""
    conn.send_bytes(codec.dumps(message))


def receive(conn: Connection, codec: Any) -> Any:
    """Receive one message from *conn*, of at most MAX_MESSAGE_BYTES."""
    return codec.loads(conn.recv_bytes(MAX_MESSAGE_BYTES))


def _rebuild_as_list(view: Any) -> Any:
    return list, (list(view),)


# A dict's keys(), values() and items() reach the client as lists.
_VIEW_TYPES: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
for _view_type in _VIEW_TYPES:
    register_reducer(_view_type, _rebuild_as_list)


#: address -> client-side ssl.SSLContext, for managers reached over TLS.
tls_contexts: dict[Any, Any] = {}
_pools: dict[tuple[Any, bytes], list[Connection]] = {}
# One idle connection per manager this process talks to, never used for calls (so never
# closed by a failed one): the server releases this process's references when it closes,
# that is, when this process ends.
_anchors: dict[tuple[Any, bytes], Connection] = {}
_pools_lock = threading.Lock()
_client: list[Any] = [None, 0]  # [client id, the pid it belongs to]


def client_id() -> str:
    """This process's id as a manager client (a new one after a fork)."""
    if _client[1] != os.getpid():
        _client[0] = f"{os.getpid()}-{os.urandom(8).hex()}"
        _client[1] = os.getpid()
    return str(_client[0])


def _after_fork_in_child() -> None:
    # The parent's connections are the parent's: a child opens its own. A new lock, in
    # case another thread of the parent held this one at the fork.
    global _pools_lock
    _pools_lock = threading.Lock()
    _pools.clear()
    _anchors.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def connect(address: Any, authkey: bytes) -> Connection:
    """A new authenticated connection to the manager at *address*.

    Raises:
        ManagerGoneError: nothing answers at *address*.
        AuthenticationError: the keys differ.
    """
    try:
        conn = Client(address, authkey=authkey, ssl_context=tls_contexts.get(address))
    except (ConnectionError, FileNotFoundError) as exc:
        raise ManagerGoneError(f"no manager answers at {address!r}: {exc}") from exc
    codec = codec_for(address)
    try:
        send(conn, codec, (HELLO, client_id()))
        status, value = receive(conn, codec)
    except (EOFError, OSError) as exc:
        conn.close()
        raise ManagerGoneError(f"the manager at {address!r} hung up: {exc}") from exc
    if status != RETURN:
        conn.close()
        raise unpack_exception(value)
    return conn


def call(address: Any, authkey: bytes, request: tuple[Any, ...]) -> tuple[str, Any]:
    """Send *request* on a pooled connection and return the reply ``(status, value)``.

    Raises:
        ManagerGoneError: the server is gone (the call may or may not have run).
    """
    key = (address, authkey)
    with _pools_lock:
        pool = _pools.get(key)
        conn = pool.pop() if pool else None
    if conn is None:
        if key not in _anchors:
            anchor = connect(address, authkey)
            with _pools_lock:
                if key in _anchors:
                    anchor.close()
                else:
                    _anchors[key] = anchor
        conn = connect(address, authkey)
    codec = codec_for(address)
    try:
        send(conn, codec, request)
        reply: tuple[str, Any] = receive(conn, codec)
    except (EOFError, OSError) as exc:
        conn.close()
        raise ManagerGoneError(
            f"the manager at {address!r} is gone (its server process exited or was "
            f"killed): {exc or type(exc).__name__}"
        ) from exc
    except BaseException:
        conn.close()  # interrupted mid-call: the reply may still come; never reuse it
        raise
    with _pools_lock:
        _pools.setdefault(key, []).append(conn)
    return reply


def result_of(reply: tuple[str, Any]) -> Any:
    """The value of a RETURN reply; raises the server-side exception of an ERROR one."""
    status, value = reply
    if status == ERROR:
        raise unpack_exception(value)
    return value


def default_authkey() -> bytes:
    """The current process's authkey (inherited from the main process)."""
    return bytes(runtime.current.authkey)


def forget(address: Any) -> None:
    """Close this process's pooled connections to the manager at *address* (shut down)."""
    with _pools_lock:
        stale = [key for key in _pools if key[0] == address]
        conns = [conn for key in stale for conn in _pools.pop(key)]
        conns += [_anchors.pop(key) for key in list(_anchors) if key[0] == address]
    for conn in conns:
        conn.close()
