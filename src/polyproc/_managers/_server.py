"""The manager's server: owns the managed objects and runs the methods clients call.

One thread accepts connections; each connection gets a thread of its own, which first
authenticates the peer (mutual HMAC with a deadline and a size cap: nothing is unpickled
before it succeeds), then serves its requests one at a time. A client blocked in a long
call (a managed ``Queue.get``) therefore holds only its own connection.

References are counted per client (see ``_protocol``): when the last connection of a client
closes, whether it said goodbye or died, the references it held are released, and objects
no client references any more are dropped.

Limits that keep a misbehaving peer from hurting the others: at most ``max_connections``
connections at once (more are closed at accept), a handshake deadline, and requests of at
most ``MAX_MESSAGE_BYTES``; a request that cannot be unpickled or names an unknown object
or method gets an error reply, and the connection goes on.
"""

from __future__ import annotations

import collections
import itertools
import socket
import threading

from .._wire._auth import HANDSHAKE_TIMEOUT_S, authenticate_accepted
from .._wire._listener import Listener
from .._wire._remote_error import pack_exception
from ..exceptions import AuthenticationError, RemoteError
from . import _proxy
from ._protocol import (
    CALL,
    COUNT,
    CREATE,
    DECREF,
    DUMMY,
    ERROR,
    GETVALUE,
    HELLO,
    INCREF,
    INFO,
    MAX_MESSAGE_BYTES,
    METHODS,
    PROXY,
    RETURN,
    SHUTDOWN,
    check_serializer,
    receive,
    send,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Server", "public_methods"]

#: Most connections a server serves at once.
MAX_CONNECTIONS = 512
_EXCEPTION_LIMIT = 1 << 20


#: Containers nested deeper than this in a request are refused: hashing or comparing one
#: nested a million deep recurses in C without limit and kills the process.
MAX_NESTING = 200
_MAX_ITEMS_CHECKED = 10_000
_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})


def _checked(request: Any) -> tuple[int, str | None, str | None, tuple[Any, ...], dict[str, Any]]:
    """*request* as ``(op, object_id, name, args, kwds)`` if well formed.

    Raises:
        ValueError: the shape or types are wrong, or its arguments nest too deep.
    """
    if not isinstance(request, tuple | list) or len(request) != 5:
        raise ValueError(f"a request is (op, object_id, name, args, kwds), not {type(request)}")
    op, object_id, name, args, kwds = request
    if type(op) is not int:
        raise ValueError("a request's op must be an int")
    if object_id is not None and type(object_id) is not str:
        raise ValueError("a request's object id must be a str or None")
    if name is not None and type(name) is not str:
        raise ValueError("a request's name must be a str or None")
    if not isinstance(args, tuple | list) or not isinstance(kwds, dict):
        raise ValueError("a request's args must be a tuple and its kwds a dict")
    flat = not kwds and all(type(arg) in _ATOMS for arg in args)  # the common case
    if not flat and _too_deep((args, kwds)):
        raise ValueError(f"a request's arguments nest deeper than {MAX_NESTING} levels")
    return op, object_id, name, tuple(args), kwds


def _too_deep(obj: Any) -> bool:
    """Whether containers nest deeper than MAX_NESTING in *obj* (looks at a bounded number
    of items: a flat list of a million numbers costs nothing)."""
    stack = [(obj, 0)]
    seen = 0
    while stack and seen < _MAX_ITEMS_CHECKED:
        item, depth = stack.pop()
        seen += 1
        if depth > MAX_NESTING:
            return True
        if type(item) in (tuple, list, set, frozenset):
            stack.extend((child, depth + 1) for child in itertools.islice(item, 64))
        elif type(item) is dict:
            stack.extend((child, depth + 1) for child in itertools.islice(item.items(), 64))
    return False


def public_methods(obj: Any) -> list[str]:
    """The names of *obj*'s callable attributes that do not start with an underscore."""
    return [name for name in dir(obj)
            if name[0] != "_" and callable(getattr(obj, name, None))]


class _Client:
    __slots__ = ("connections", "refs")

    def __init__(self) -> None:
        self.connections = 0
        self.refs: collections.Counter[str] = collections.Counter()


class Server:
    """Serves the objects of one manager at *address* (a Unix socket when None).

    *registry* maps a type id to ``(callable, exposed, method_to_typeid)``.
    """

    def __init__(
        self,
        registry: dict[str, tuple[Any, Any, Any]],
        address: Any,
        authkey: bytes,
        serializer: str = "pickle",
        *,
        max_connections: int = MAX_CONNECTIONS,
        ssl_context: Any = None,
    ) -> None:
        self.codec = check_serializer(serializer)
        if not isinstance(authkey, bytes):
            raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
        self.registry = registry
        self.authkey = bytes(authkey)
        self.listener = Listener(address, backlog=128)
        self.address = self.listener.address
        self.max_connections = max_connections
        # A server-side ssl.SSLContext, or a function making one (it can be sent to a
        # spawned server process where a context cannot).
        self.ssl_context = ssl_context() if callable(ssl_context) else ssl_context
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[Any, tuple[str, ...], dict[str, str]]] = {}
        self._typeids: dict[str, str] = {}
        self._refs: collections.Counter[str] = collections.Counter()
        self._kept: dict[str, Any] = {}  # referents of proxies stored inside the server
        self._clients: dict[str, _Client] = {}
        self._connections = 0
        self._ids = itertools.count(1)
        self.stop_event = threading.Event()

    # -- serving ------------------------------------------------------------------------
    def serve_forever(self) -> None:
        """Accept and serve clients until a client asks the server to shut down."""
        _proxy.local_server[0] = self
        accepter = threading.Thread(target=self._accept_forever, name="manager-accepter",
                                    daemon=True)
        accepter.start()
        try:
            while not self.stop_event.wait(1.0):
                pass
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self._stop_listening()

    def _stop_listening(self) -> None:
        sock = self.listener._socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accepter blocked in accept()
            except OSError:
                pass
        self.listener.close()

    def _accept_forever(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = self.listener.accept()
            except OSError:
                if self.listener._socket is None or self.stop_event.is_set():
                    return  # the listener was closed: shutting down
                # Out of descriptors (EMFILE), or a peer gone before accept: keep serving.
                # Back off a little so that a full descriptor table is not a busy loop.
                self.stop_event.wait(0.05)
                continue
            with self._lock:
                full = self._connections >= self.max_connections
                if not full:
                    self._connections += 1
            if full:
                conn.close()
                continue
            threading.Thread(target=self._serve_connection, args=(conn,),
                             name="manager-connection", daemon=True).start()

    def _serve_connection(self, conn: Any) -> None:
        client: _Client | None = None
        client_key = ""
        try:
            try:
                if self.ssl_context is not None:
                    from .._wire._tls import secure

                    conn = secure(conn, self.ssl_context, server_side=True,
                                  timeout=HANDSHAKE_TIMEOUT_S)
                authenticate_accepted(conn, self.authkey, HANDSHAKE_TIMEOUT_S)
                request = receive(conn, self.codec)
            except (AuthenticationError, EOFError, OSError):
                return
            except Exception:
                return  # garbage where the greeting should be (or a failed TLS handshake)
            if not (isinstance(request, tuple | list) and len(request) == 2
                    and request[0] == HELLO and isinstance(request[1], str)):
                return
            client_key = request[1]
            with self._lock:
                client = self._clients.setdefault(client_key, _Client())
                client.connections += 1
            send(conn, self.codec, (RETURN, None))
            self._serve_requests(conn, client)
        finally:
            conn.close()
            with self._lock:
                self._connections -= 1
                if client is not None:
                    client.connections -= 1
                    if client.connections == 0:
                        # The client is gone (or closed everything): release what it held.
                        del self._clients[client_key]
                        for object_id, count in client.refs.items():
                            self._drop_refs(object_id, count)

    def _serve_requests(self, conn: Any, client: _Client) -> None:
        while not self.stop_event.is_set():
            try:
                data = conn.recv_bytes(MAX_MESSAGE_BYTES)
            except (EOFError, OSError):
                return
            try:
                request = self.codec.loads(data)
                op, object_id, name, args, kwds = _checked(request)
                reply = self._handle(client, op, object_id, name, args, kwds)
            except BaseException as exc:  # a bad request, or the method raised
                reply = (ERROR, pack_exception(exc, "the manager's server", _EXCEPTION_LIMIT))
            del data
            try:
                send(conn, self.codec, reply)
            except (EOFError, OSError):
                return
            except Exception as exc:  # the result cannot be pickled
                send(conn, self.codec,
                     (ERROR, pack_exception(exc, "the manager's server", _EXCEPTION_LIMIT)))
            if reply[0] == RETURN and op == SHUTDOWN:
                self.stop_event.set()
                return

    # -- requests -----------------------------------------------------------------------
    def _handle(
        self, client: _Client, op: int, object_id: Any, name: Any, args: Any, kwds: Any
    ) -> tuple[str, Any]:
        handler = self._handlers.get(op)
        if handler is None:
            return self._handle_other(op, name, args)
        reply: tuple[str, Any] = handler(self, client, object_id, name, args, kwds)
        return reply

    def _call(self, client: _Client, object_id: Any, name: Any, args: Any, kwds: Any
              ) -> tuple[str, Any]:
        obj, exposed, method_to_typeid = self._lookup(object_id)
        if name not in exposed and name not in ("__repr__", "__str__"):
            raise RemoteError(
                "AttributeError",
                f"method {name!r} of {type(obj).__name__} object is not in the list of "
                f"allowed methods {list(exposed)!r}",
            )
        result = getattr(obj, name)(*args, **kwds)
        typeid = method_to_typeid.get(name)
        if typeid is not None:
            new_id, new_exposed = self._register(client, typeid, result)
            return (PROXY, (typeid, new_id, new_exposed))
        return (RETURN, result)

    def _incref(self, client: _Client, object_id: Any, *_: Any) -> tuple[str, Any]:
        with self._lock:
            self._lookup(object_id)
            self._refs[object_id] += 1
            client.refs[object_id] += 1
        return (RETURN, None)

    def _decref(self, client: _Client, object_id: Any, *_: Any) -> tuple[str, Any]:
        with self._lock:
            if client.refs[object_id] > 0:
                client.refs[object_id] -= 1
                if not client.refs[object_id]:
                    del client.refs[object_id]
                self._drop_refs(object_id, 1)
        return (RETURN, None)

    def _count(self, *_: Any) -> tuple[str, Any]:
        with self._lock:
            return (RETURN, sum(1 for count in self._refs.values() if count > 0))

    _handlers: dict[int, Any] = {
        CALL: _call,
        CREATE: lambda self, client, _id, name, args, kwds: (
            RETURN, self._create(client, name, args, kwds)
        ),
        INCREF: _incref,
        DECREF: _decref,
        GETVALUE: lambda self, client, object_id, *_: (RETURN, self._lookup(object_id)[0]),
        METHODS: lambda self, client, object_id, *_: (RETURN, list(self._lookup(object_id)[1])),
        COUNT: _count,
        INFO: lambda self, *_: (RETURN, self._debug_info()),
        SHUTDOWN: lambda self, *_: (RETURN, None),
        DUMMY: lambda self, *_: (RETURN, None),
    }

    def _handle_other(self, op: int, name: Any, args: Any) -> tuple[str, Any]:
        """Requests a subclass adds (SharedMemoryManager's); none here."""
        raise ValueError(f"unknown manager request {op!r}")

    def _lookup(self, object_id: Any) -> tuple[Any, tuple[str, ...], dict[str, str]]:
        try:
            return self._objects[object_id]
        except KeyError:
            raise KeyError(
                f"the manager holds no object {object_id!r} (it was released: no process "
                f"referenced it any more)"
            ) from None

    def _create(
        self, client: _Client, typeid: str, args: tuple[Any, ...], kwds: dict[str, Any]
    ) -> tuple[str, list[str]]:
        try:
            factory = self.registry[typeid][0]
        except KeyError:
            raise ValueError(f"the manager has no type {typeid!r} registered") from None
        if factory is None:
            raise ValueError(f"type {typeid!r} cannot be created directly")
        obj = factory(*args, **kwds)
        object_id, exposed = self._register(client, typeid, obj)
        return object_id, exposed

    def _register(self, client: _Client, typeid: str, obj: Any) -> tuple[str, list[str]]:
        """Hold *obj* as a managed object of *typeid*; the client gets one reference."""
        entry = self.registry.get(typeid, (None, None, None))
        exposed = tuple(entry[1]) if entry[1] is not None else tuple(public_methods(obj))
        method_to_typeid = dict(entry[2] or {})
        with self._lock:
            object_id = f"{next(self._ids):x}"
            self._objects[object_id] = (obj, exposed, method_to_typeid)
            self._typeids[object_id] = typeid
            self._refs[object_id] = 1
            client.refs[object_id] += 1
        return object_id, list(exposed)

    def _drop_refs(self, object_id: str, count: int) -> None:
        """Forget *count* references (under the lock); drop the object at zero."""
        if object_id not in self._refs:
            return
        self._refs[object_id] -= count
        if self._refs[object_id] <= 0:
            del self._refs[object_id]
            if object_id not in self._kept:
                self._objects.pop(object_id, None)
                self._typeids.pop(object_id, None)

    def keep_alive(self, object_id: str) -> None:
        """A proxy to *object_id* now lives inside the server: keep the referent."""
        with self._lock:
            if object_id in self._objects:
                self._kept[object_id] = self._objects[object_id][0]

    def _debug_info(self) -> str:
        with self._lock:
            lines = [
                f"  {object_id}: refcount={count}    {self._typeids.get(object_id)}"
                f"    {str(self._objects[object_id][0])[:75]!r}"
                for object_id, count in self._refs.items()
                if object_id in self._objects
            ]
        return "\n".join(lines)
