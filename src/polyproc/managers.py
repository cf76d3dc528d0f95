"""Managers, as in :mod:`multiprocessing.managers`: objects held by a server process and
shared by proxy between processes, on this machine or across machines.

``Manager()`` (or ``get_context(...).Manager()``) starts a :class:`SyncManager`. Beyond
the standard library: the server listens on a Unix socket unless given an address; the
handshake is mutual HMAC-SHA256 with a deadline and size limits, and nothing is unpickled
before it succeeds; a client that dies releases the references it held; a call to a
manager whose server is gone raises :class:`ManagerGoneError` at once instead of hanging.
"""

from __future__ import annotations

from ._managers._manager import Array, BaseManager, Namespace, State, SyncManager, Value
from ._managers._protocol import ManagerGoneError
from ._managers._proxy import (
    AcquirerProxy,
    ArrayProxy,
    AutoProxy,
    BarrierProxy,
    BaseListProxy,
    BaseProxy,
    ConditionProxy,
    DictProxy,
    EventProxy,
    IteratorProxy,
    ListProxy,
    MakeProxyType,
    NamespaceProxy,
    PoolProxy,
    RebuildProxy,
    Token,
    ValueProxy,
)
from ._managers._server import Server, public_methods
from ._managers._shared_memory_manager import SharedMemoryManager, SharedMemoryServer
from .exceptions import RemoteError

__all__ = [
    "AcquirerProxy",
    "Array",
    "ArrayProxy",
    "AutoProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BaseManager",
    "BaseProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "MakeProxyType",
    "ManagerGoneError",
    "Namespace",
    "NamespaceProxy",
    "PoolProxy",
    "RebuildProxy",
    "RemoteError",
    "Server",
    "SharedMemoryManager",
    "SharedMemoryServer",
    "State",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "public_methods",
]
