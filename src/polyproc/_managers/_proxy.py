"""Proxies: objects in a client that forward method calls to a referent in a manager.

A proxy holds a :class:`Token` (type id, server address, object id). Calls go through
``_protocol.call``; a result the server registered as a managed object comes back as a
proxy of its own. References are counted per client process: a proxy made from a
``create`` or a method result holds the reference the server gave the client; a proxy
unpickled in another process takes one of its own, lazily, on its first use there, and
gives it back when it is collected. A proxy rebuilt inside the server process itself (a
managed list stored in a managed dict) keeps its referent alive for the server's life.
"""

from __future__ import annotations

import threading
import weakref

from .._wire import _pickling
from ._protocol import (
    CALL,
    DECREF,
    GETVALUE,
    INCREF,
    METHODS,
    PROXY,
    call,
    check_serializer,
    client_id,
    default_authkey,
    result_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = [
    "AcquirerProxy",
    "ArrayProxy",
    "AutoProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BaseProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "MakeProxyType",
    "NamespaceProxy",
    "PoolProxy",
    "RebuildProxy",
    "Token",
    "ValueProxy",
]

#: address -> authkey of the managers this process started or connected to.
known_authkeys: dict[Any, bytes] = {}
#: The server running in this process, if this process is a manager's server.
local_server: list[Any] = [None]


class Token:
    """Names a managed object: its type id, its server's address, and its id there."""

    __slots__ = ("address", "id", "typeid")

    def __init__(self, typeid: str, address: Any, id: str) -> None:
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self) -> tuple[str, Any, str]:
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state: tuple[str, Any, str]) -> None:
        self.typeid, self.address, self.id = state

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(typeid={self.typeid!r}, address={self.address!r}, "
                f"id={self.id!r})")


class _KeyForChild(bytes):
    """A proxy's own authkey, given to a child at its start; dropped (None) when the proxy
    is pickled for anything else, since keys never travel in ordinary messages."""

    def __reduce__(self) -> Any:
        return _no_key, ()


def _no_key() -> None:
    return None


_pickling.register_transfer(
    _KeyForChild, lambda key, add_fd: bytes(key), lambda state, fds: _KeyForChild(state)
)


def _release(address: Any, authkey: bytes | None, object_id: str, holder: list[Any]) -> None:
    """The finalizer of a proxy: give back the reference its process holds, if any."""
    owner = holder[0]
    if owner is None or owner != client_id():
        return  # never took one here (or it was taken by the process this was forked from)
    if authkey is None:
        authkey = known_authkeys.get(address) or default_authkey()
    try:
        call(address, authkey, (DECREF, object_id, None, (), {}))
    except Exception:
        pass  # the manager is gone: nothing left to release


class BaseProxy:
    """The base of every proxy: ``_callmethod``, ``_getvalue``, pickling, reference counts."""

    _exposed_: tuple[str, ...] | None = None
    _method_to_typeid_: dict[str, str] | None = None

    def __init__(
        self,
        token: Token,
        serializer: str = "pickle",
        manager: Any = None,
        authkey: bytes | None = None,
        exposed: Iterable[str] | None = None,
        incref: bool = True,
        manager_owned: bool = False,
    ) -> None:
        check_serializer(serializer)
        self._token = token
        self._id = token.id
        self._serializer = serializer
        self._manager = manager
        self._authkey_given = None if authkey is None else bytes(authkey)
        self._owned_by_manager = manager_owned
        # Which client holds this proxy's reference: None until one is taken.
        self._holder: list[Any] = [None]
        if manager_owned:
            return
        if incref:
            self._incref()
        else:
            self._holder[0] = client_id()
        weakref.finalize(self, _release, token.address, self._authkey_given, token.id,
                         self._holder)

    @property
    def _authkey(self) -> bytes:
        # Resolved when used, not when unpickled: in a child being started, the process's
        # own authkey is only in place once the start payload is unpickled.
        if self._authkey_given is not None:
            return self._authkey_given
        return known_authkeys.get(self._token.address) or default_authkey()

    def _incref(self) -> None:
        call(self._token.address, self._authkey, (INCREF, self._id, None, (), {}))
        self._holder[0] = client_id()

    def _call(self, op: int, name: str | None, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        if not self._owned_by_manager and self._holder[0] != client_id():
            self._incref()  # first use in a process this proxy was inherited or sent to
        status, value = call(self._token.address, self._authkey, (op, self._id, name, args, kwds))
        if status == PROXY:
            typeid, object_id, exposed = value
            proxytype = _proxytype_for(self._manager, typeid)
            return proxytype(
                Token(typeid, self._token.address, object_id),
                self._serializer,
                manager=self._manager,
                authkey=self._authkey,
                exposed=exposed,
                incref=False,
            )
        return result_of((status, value))

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call *methodname* on the referent and return its result.

        Raises:
            Exception: whatever the method raised in the server, with the server's
                traceback as its cause.
            ManagerGoneError: the server cannot be reached.
        """
        return self._call(CALL, methodname, tuple(args), dict(kwds or {}))

    def _getvalue(self) -> Any:
        """A copy of the referent."""
        return self._call(GETVALUE, None, (), {})

    def __reduce__(self) -> Any:
        kwds: dict[str, Any] = {}
        if type(self).__name__.startswith("AutoProxy[") or type(self) is AutoProxy:
            kwds["exposed"] = self._exposed_
        # The key goes to a child being started (and tells RebuildProxy so); any other
        # pickle drops it, and the receiver uses the key it knows for that address.
        key = _KeyForChild(self._authkey)
        return RebuildProxy, (_rebuild_target(self), self._token, self._serializer, kwds, key)

    def __deepcopy__(self, memo: Any) -> Any:
        return self._getvalue()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} object, typeid {self._token.typeid!r} at "
                f"{id(self):#x}>")

    def __str__(self) -> str:
        try:
            return str(self._callmethod("__repr__"))
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def _rebuild_target(proxy: BaseProxy) -> Any:
    cls = type(proxy)
    if cls.__name__.startswith("AutoProxy["):
        return AutoProxy
    return cls


def RebuildProxy(
    func: Any, token: Token, serializer: str, kwds: dict[str, Any], key: bytes | None = None
) -> BaseProxy:
    """Rebuild a pickled proxy (the unpickling side of ``BaseProxy.__reduce__``)."""
    server = local_server[0]
    if server is not None and server.address == token.address:
        server.keep_alive(token.id)
        kwds = {**kwds, "manager_owned": True}
    # Take this process's reference now, while the sender surely still holds its own;
    # in a child being started (the key came along), on first use instead: the parent
    # holds its reference across the start.
    starting_child = key is not None
    if starting_child:
        kwds["authkey"] = bytes(key)  # type: ignore[arg-type]
        known_authkeys.setdefault(token.address, bytes(key))  # type: ignore[arg-type]
    incref = not kwds.get("manager_owned") and not starting_child
    proxy: BaseProxy = func(token, serializer, incref=incref, **kwds)
    if starting_child:
        proxy._holder[0] = None
    return proxy


def _proxytype_for(manager: Any, typeid: str) -> Any:
    registry = getattr(manager, "_registry", None) or _default_registry()
    entry = registry.get(typeid)
    proxytype = entry[3] if entry is not None else None
    return proxytype or AutoProxy


def _default_registry() -> dict[str, Any]:
    from ._manager import SyncManager  # the registry a proxy without a manager falls back on

    registry: dict[str, Any] = SyncManager._registry
    return registry


_proxy_types: dict[tuple[str, tuple[str, ...]], type[BaseProxy]] = {}
_proxy_types_lock = threading.Lock()


def MakeProxyType(name: str, exposed: Iterable[str], _cache: Any = None) -> type[BaseProxy]:
    """A BaseProxy subclass named *name* whose methods *exposed* forward to the referent."""
    exposed = tuple(exposed)
    key = (name, exposed)
    with _proxy_types_lock:
        cached = _proxy_types.get(key)
        if cached is not None:
            return cached
        namespace: dict[str, Any] = {"_exposed_": exposed}
        for method in exposed:
            namespace[method] = _forwarder(method)
        proxytype = type(name, (BaseProxy,), namespace)
        _proxy_types[key] = proxytype
        return proxytype


def _forwarder(method: str) -> Any:
    def forward(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
        return self._callmethod(method, args, kwds)

    forward.__name__ = method
    return forward


def AutoProxy(
    token: Token,
    serializer: str = "pickle",
    manager: Any = None,
    authkey: bytes | None = None,
    exposed: Iterable[str] | None = None,
    incref: bool = True,
    manager_owned: bool = False,
) -> BaseProxy:
    """A proxy whose methods are those the referent exposes (asked of the server if
    *exposed* is not given)."""
    if exposed is None:
        key = bytes(authkey if authkey is not None
                    else known_authkeys.get(token.address) or default_authkey())
        exposed = result_of(call(token.address, key, (METHODS, token.id, None, (), {})))
    proxytype = MakeProxyType(f"AutoProxy[{token.typeid}]", tuple(exposed or ()))
    return proxytype(token, serializer, manager=manager, authkey=authkey, incref=incref,
                     manager_owned=manager_owned)


# -- the proxies of SyncManager's types ---------------------------------------------------


class IteratorProxy(BaseProxy):
    """An iterator (or generator) living in the manager."""

    _exposed_ = ("__next__", "send", "throw", "close")

    def __iter__(self) -> IteratorProxy:
        return self

    def __next__(self, *args: Any) -> Any:
        return self._callmethod("__next__", args)

    def send(self, *args: Any) -> Any:
        """Send a value into the generator."""
        return self._callmethod("send", args)

    def throw(self, *args: Any) -> Any:
        """Raise an exception inside the generator."""
        return self._callmethod("throw", args)

    def close(self, *args: Any) -> Any:
        """Close the generator."""
        return self._callmethod("close", args)


class AcquirerProxy(BaseProxy):
    """A lock or semaphore living in the manager."""

    _exposed_: tuple[str, ...] = ("acquire", "release")

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire, as the referent's ``acquire``."""
        args = (blocking,) if timeout is None else (blocking, timeout)
        return bool(self._callmethod("acquire", args))

    def release(self) -> None:
        """Release, as the referent's ``release``."""
        self._callmethod("release")

    def __enter__(self) -> bool:
        return bool(self._callmethod("acquire"))

    def __exit__(self, *exc_info: object) -> None:
        self._callmethod("release")


class ConditionProxy(AcquirerProxy):
    """A condition variable living in the manager."""

    _exposed_ = ("acquire", "release", "wait", "notify", "notify_all")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait to be notified, at most *timeout* seconds."""
        return bool(self._callmethod("wait", (timeout,)))

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiters."""
        self._callmethod("notify", (n,))

    def notify_all(self) -> None:
        """Wake every waiter."""
        self._callmethod("notify_all")

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        """Wait until *predicate()* is true, at most *timeout* seconds; returns it."""
        import time

        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    """An event living in the manager."""

    _exposed_ = ("is_set", "set", "clear", "wait")

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._callmethod("is_set"))

    def set(self) -> None:
        """Set the flag, waking the waiters."""
        self._callmethod("set")

    def clear(self) -> None:
        """Clear the flag."""
        self._callmethod("clear")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the flag is set, at most *timeout* seconds."""
        return bool(self._callmethod("wait", (timeout,)))


class BarrierProxy(BaseProxy):
    """A barrier living in the manager."""

    _exposed_ = ("__getattribute__", "wait", "abort", "reset")

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the other parties."""
        return int(self._callmethod("wait", (timeout,)))

    def abort(self) -> None:
        """Break the barrier."""
        self._callmethod("abort")

    def reset(self) -> None:
        """Reset the barrier."""
        self._callmethod("reset")

    @property
    def parties(self) -> int:
        """The number of parties."""
        return int(self._callmethod("__getattribute__", ("parties",)))

    @property
    def n_waiting(self) -> int:
        """How many parties wait now."""
        return int(self._callmethod("__getattribute__", ("n_waiting",)))

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return bool(self._callmethod("__getattribute__", ("broken",)))


class NamespaceProxy(BaseProxy):
    """A namespace living in the manager: attribute access goes to the referent."""

    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def __getattr__(self, key: str) -> Any:
        if key[0] == "_":
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, "_callmethod")("__getattribute__", (key,))

    def __setattr__(self, key: str, value: Any) -> None:
        if key[0] == "_":
            object.__setattr__(self, key, value)
            return
        object.__getattribute__(self, "_callmethod")("__setattr__", (key, value))

    def __delattr__(self, key: str) -> None:
        if key[0] == "_":
            object.__delattr__(self, key)
            return
        object.__getattribute__(self, "_callmethod")("__delattr__", (key,))


class ValueProxy(BaseProxy):
    """A value living in the manager (``manager.Value``)."""

    _exposed_ = ("get", "set")

    def get(self) -> Any:
        """The value."""
        return self._callmethod("get")

    def set(self, value: Any) -> None:
        """Replace the value."""
        self._callmethod("set", (value,))

    value = property(get, set)


BaseListProxy = MakeProxyType("BaseListProxy", (
    "__add__", "__contains__", "__delitem__", "__getitem__", "__len__", "__mul__",
    "__reversed__", "__rmul__", "__setitem__", "append", "count", "extend", "index",
    "insert", "pop", "remove", "reverse", "sort", "__imul__",
))


class ListProxy(BaseListProxy):  # type: ignore[misc, valid-type]
    """A list living in the manager."""

    def __iadd__(self, value: Any) -> ListProxy:
        self._callmethod("extend", (value,))
        return self

    def __imul__(self, value: Any) -> ListProxy:
        self._callmethod("__imul__", (value,))
        return self


DictProxy = MakeProxyType("DictProxy", (
    "__contains__", "__delitem__", "__getitem__", "__iter__", "__len__", "__setitem__",
    "clear", "copy", "get", "items", "keys", "pop", "popitem", "setdefault", "update",
    "values",
))
DictProxy._method_to_typeid_ = {"__iter__": "Iterator"}

ArrayProxy = MakeProxyType("ArrayProxy", ("__len__", "__getitem__", "__setitem__"))

BasePoolProxy = MakeProxyType("PoolProxy", (
    "apply", "apply_async", "close", "imap", "imap_unordered", "join", "map", "map_async",
    "starmap", "starmap_async", "terminate",
))


class PoolProxy(BasePoolProxy):  # type: ignore[misc, valid-type]
    """A process pool living in the manager."""

    _method_to_typeid_ = {
        "apply_async": "AsyncResult",
        "map_async": "AsyncResult",
        "starmap_async": "AsyncResult",
        "imap": "Iterator",
        "imap_unordered": "Iterator",
    }

    def __enter__(self) -> PoolProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

