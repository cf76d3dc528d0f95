"""``BaseManager`` and ``SyncManager``: start or connect to a server, create managed
objects, and hand out proxies to them.

A manager started with :meth:`BaseManager.start` runs its :class:`~._server.Server` in a
child process (any start method) listening on a Unix socket by default, so only this user
can even reach it; a TCP *address* makes it reachable from other machines, and every
connection must still prove it knows the *authkey* (mutual HMAC-SHA256). If the process
that started the manager dies, the server goes with it (a child's lifeline).
"""

from __future__ import annotations

import array
import queue
import signal
import threading
import weakref

from .._process._process import current_process
from .._process._state import runtime
from .._wire._connection import make_pipe
from ..exceptions import ProcessError
from . import _protocol
from ._protocol import (
    COUNT,
    CREATE,
    INFO,
    SHUTDOWN,
    call,
    check_serializer,
    result_of,
    tls_contexts,
)
from ._proxy import (
    AcquirerProxy,
    ArrayProxy,
    AutoProxy,
    BarrierProxy,
    ConditionProxy,
    DictProxy,
    EventProxy,
    IteratorProxy,
    ListProxy,
    NamespaceProxy,
    PoolProxy,
    Token,
    ValueProxy,
    known_authkeys,
)
from ._server import Server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, Self

__all__ = ["Array", "BaseManager", "Namespace", "State", "SyncManager", "Value"]


class State:
    """Where a manager is in its life: ``INITIAL``, ``STARTED`` or ``SHUTDOWN``."""

    __slots__ = ("value",)
    INITIAL, STARTED, SHUTDOWN = 0, 1, 2

    def __init__(self) -> None:
        self.value = State.INITIAL


class BaseManager:
    """A manager of shared objects served by a server process.

    *address* is where the server listens (default: a new Unix socket; a ``(host, port)``
    pair for TCP); *authkey* defaults to the current process's authkey; *ctx* picks how
    the server process starts; *shutdown_timeout* is how long :meth:`shutdown` waits for
    the server before terminating it.

    TLS (polyproc extensions): *ssl_context* is the client-side ``ssl.SSLContext`` this
    process (and its forked children) use to reach the server; *server_ssl_context* is
    the server's (an ``SSLContext``, or a function returning one, which can be sent to a
    spawned server process). Require client certificates on the server's context for
    mutual TLS.
    """

    _registry: dict[str, tuple[Any, Any, Any, Any]] = {}
    _Server = Server

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
        ssl_context: Any = None,
        server_ssl_context: Any = None,
    ) -> None:
        check_serializer(serializer)
        if authkey is None:
            authkey = current_process().authkey
        self._address = address
        self._authkey = bytes(authkey)
        self._state = State()
        self._serializer = serializer
        self._ctx = ctx if ctx is not None else runtime.default_context()
        self._shutdown_timeout = shutdown_timeout
        self._ssl_context = ssl_context
        self._server_ssl_context = server_ssl_context
        if ssl_context is not None and address is not None:
            tls_contexts[address] = ssl_context
        if address is not None:
            _protocol.codecs[address] = check_serializer(serializer)
        self._process: Any = None

    @property
    def address(self) -> Any:
        """The server's address (known once started or connected)."""
        return self._address

    def get_server(self) -> Server:
        """A server for this manager's registry, bound to its address, to run in this
        process with ``serve_forever()``.

        Raises:
            ProcessError: the manager was already started or shut down.
        """
        self._check_initial()
        return self._Server(self._server_registry(), self._address, self._authkey,
                            self._serializer, ssl_context=self._server_ssl_context)

    def connect(self) -> None:
        """Connect to a server already running at ``address``.

        Raises:
            ManagerGoneError: nothing answers there.
            AuthenticationError: the authkey is wrong.
        """
        _protocol.connect(self._address, self._authkey).close()
        known_authkeys[self._address] = self._authkey
        self._state.value = State.STARTED

    def start(
        self, initializer: Callable[..., object] | None = None, initargs: Iterable[Any] = ()
    ) -> None:
        """Start the server in a child process; *initializer(\\*initargs)* runs there first.

        Raises:
            ProcessError: already started, or shut down.
            TypeError: *initializer* is not callable.
        """
        self._check_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        reader, writer = make_pipe(duplex=False)
        self._process = self._ctx.Process(
            target=type(self)._run_server,
            args=(self._server_registry(), self._address, self._authkey, self._serializer,
                  writer, initializer, tuple(initargs), self._server_ssl_context),
            name=f"{type(self).__name__}-server",
        )
        try:
            self._process.start()
        finally:
            writer.close()
        try:
            self._address = reader.recv()
        except EOFError:
            self._process.join()
            raise ProcessError(
                f"the manager's server process exited with {self._process.exitcode} "
                f"before it started serving"
            ) from None
        finally:
            reader.close()
        known_authkeys[self._address] = self._authkey
        _protocol.codecs[self._address] = check_serializer(self._serializer)
        if self._ssl_context is not None:
            tls_contexts[self._address] = self._ssl_context
        self._state.value = State.STARTED
        self.shutdown = weakref.finalize(  # type: ignore[method-assign]
            self, _finalize_manager, self._process, self._address, self._authkey,
            self._state, self._shutdown_timeout,
        )

    @classmethod
    def _run_server(
        cls,
        registry: dict[str, tuple[Any, Any, Any]],
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        ssl_context: Any = None,
    ) -> None:
        # Ctrl-C in a terminal reaches the whole process group: the server must outlive
        # it, and leave when its manager shuts it down (or its parent dies).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, authkey, serializer, ssl_context=ssl_context)
        writer.send(server.address)
        writer.close()
        server.serve_forever()

    def _check_initial(self) -> None:
        if self._state.value == State.STARTED:
            raise ProcessError("Already started server")
        if self._state.value == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")

    @classmethod
    def _server_registry(cls) -> dict[str, tuple[Any, Any, Any]]:
        # The server needs what to call and what to expose, not the client's proxy types.
        return {typeid: entry[:3] for typeid, entry in cls._registry.items()}

    def shutdown(self) -> None:
        """Stop the server (a manager that was never started has nothing to stop)."""
        # Replaced by a finalizer in start(), so that it also runs at exit.

    def join(self, timeout: float | None = None) -> None:
        """Wait for the server process to exit."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> tuple[Token, list[str]]:
        """Create a *typeid* object in the server; return its token and exposed methods."""
        if self._state.value != State.STARTED:
            raise ProcessError("the manager is not started (call start() or connect())")
        object_id, exposed = result_of(
            call(self._address, self._authkey, (CREATE, None, typeid, args, kwds))
        )
        return Token(typeid, self._address, object_id), exposed

    def _number_of_objects(self) -> int:
        """How many objects the server holds references to."""
        return int(result_of(call(self._address, self._authkey, (COUNT, None, None, (), {}))))

    def _debug_info(self) -> str:
        """One line per object the server holds: id, reference count, type, value."""
        return str(result_of(call(self._address, self._authkey, (INFO, None, None, (), {}))))

    def __enter__(self) -> Self:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError(f"Unable to start server: manager is in state {self._state.value}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __reduce__(self) -> Any:
        raise TypeError("a manager cannot be pickled; pass its proxies instead")

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Callable[..., Any] | None = None,
        proxytype: Any = None,
        exposed: Iterable[str] | None = None,
        method_to_typeid: Mapping[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Make *typeid* a type this manager can create: ``manager.typeid(...)`` calls
        *callable* in the server and returns a *proxytype* proxy (``AutoProxy`` by
        default) exposing *exposed* (default: the proxy type's ``_exposed_``, else the
        object's public methods); methods named in *method_to_typeid* return proxies of
        those type ids."""
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if not (isinstance(key, str) and isinstance(value, str)):
                    raise TypeError(f"method_to_typeid must map str to str, not {key!r}: {value!r}")
        cls._registry[typeid] = (
            callable,
            tuple(exposed) if exposed is not None else None,
            dict(method_to_typeid) if method_to_typeid else None,
            proxytype,
        )
        if create_method:
            def create(self: BaseManager, /, *args: Any, **kwds: Any) -> Any:
                token, exp = self._create(typeid, *args, **kwds)
                return proxytype(token, self._serializer, manager=self,
                                 authkey=self._authkey, exposed=exp, incref=False)

            create.__name__ = typeid
            setattr(cls, typeid, create)


def _finalize_manager(
    process: Any, address: Any, authkey: bytes, state: State, timeout: float
) -> None:
    """Ask the server to stop; terminate it if it does not within *timeout*."""
    if process.is_alive():
        try:
            conn = _protocol.connect(address, authkey)
            try:
                codec = _protocol.codec_for(address)
                _protocol.send(conn, codec, (SHUTDOWN, None, None, (), {}))
                _protocol.receive(conn, codec)
            finally:
                conn.close()
        except Exception:
            pass
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
    state.value = State.SHUTDOWN
    _protocol.forget(address)


# -- SyncManager and the types it serves --------------------------------------------------


class Namespace:
    """A bag of attributes (``manager.Namespace()``)."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = [f"{name}={value!r}" for name, value in self.__dict__.items()
                 if not name.startswith("_")]
        return f"Namespace({', '.join(sorted(items))})"


class Value:
    """A value held by the manager (``manager.Value(typecode, value)``)."""

    def __init__(self, typecode: str, value: Any, lock: bool = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        """The value."""
        return self._value

    def set(self, value: Any) -> None:
        """Replace the value."""
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def Array(typecode: str, sequence: Iterable[Any], lock: bool = True) -> array.array[Any]:
    """An ``array.array`` held by the manager (``manager.Array(typecode, sequence)``)."""
    return array.array(typecode, sequence)


def _make_pool(*args: Any, **kwds: Any) -> Any:
    from .._pool._pool import Pool

    return Pool(*args, **kwds)


class SyncManager(BaseManager):
    """The manager ``polyproc.Manager()`` returns: dicts, lists, namespaces, queues,
    synchronization primitives, values, arrays and pools, shared by proxy."""

    if TYPE_CHECKING:  # made by register() below; declared for type checkers
        def Queue(self, maxsize: int = 0) -> Any: ...
        def JoinableQueue(self, maxsize: int = 0) -> Any: ...
        def Event(self) -> EventProxy: ...
        def Lock(self) -> AcquirerProxy: ...
        def RLock(self) -> AcquirerProxy: ...
        def Semaphore(self, value: int = 1) -> AcquirerProxy: ...
        def BoundedSemaphore(self, value: int = 1) -> AcquirerProxy: ...
        def Condition(self, lock: Any = None) -> ConditionProxy: ...
        def Barrier(self, parties: int, action: Any = None,
                    timeout: float | None = None) -> BarrierProxy: ...
        def Pool(self, *args: Any, **kwds: Any) -> PoolProxy: ...
        def list(self, sequence: Any = ()) -> ListProxy: ...
        def dict(self, *args: Any, **kwds: Any) -> Any: ...
        def Value(self, typecode: Any, value: Any, lock: bool = True) -> ValueProxy: ...
        def Array(self, typecode: Any, sequence: Any, lock: bool = True) -> Any: ...
        def Namespace(self, **kwds: Any) -> NamespaceProxy: ...


SyncManager.register("Queue", queue.Queue)
SyncManager.register("JoinableQueue", queue.Queue)
SyncManager.register("Event", threading.Event, EventProxy)
SyncManager.register("Lock", threading.Lock, AcquirerProxy)
SyncManager.register("RLock", threading.RLock, AcquirerProxy)
SyncManager.register("Semaphore", threading.Semaphore, AcquirerProxy)
SyncManager.register("BoundedSemaphore", threading.BoundedSemaphore, AcquirerProxy)
SyncManager.register("Condition", threading.Condition, ConditionProxy)
SyncManager.register("Barrier", threading.Barrier, BarrierProxy)
SyncManager.register("Pool", _make_pool, PoolProxy)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", Array, ArrayProxy)
SyncManager.register("Namespace", Namespace, NamespaceProxy)
# Types of method results, never created directly.
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)
