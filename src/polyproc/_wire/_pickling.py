"""Serialization: fast pickling by reference, by value when that cannot work.

Three ways to turn an object into bytes, from fastest to most capable:

* :func:`dumps` pickles with the C pickler. Functions and classes go by reference
  (module and name), which is what the standard library does. When that fails, because
  the object is a lambda, a closure, a class defined in a function, or a function of a
  ``__main__`` that other processes cannot import (a notebook, ``python -c``), it pickles
  again with :class:`ByValuePickler`, which sends just those objects by value through
  cloudpickle. Objects that pickle by reference never pay for the fallback.
* :class:`TransferPickler` is the pickler of a process start (spawn, forkserver): objects
  that stand for operating-system resources (a :class:`~polyproc.connection.Connection`,
  the authkey) register a *transfer* with :func:`register_transfer`; when pickled here
  their descriptors are collected to be passed to the child, and :class:`TransferUnpickler`
  in the child rebuilds them from the received descriptors. There is no thread-local
  "am I spawning" flag: the pickler object is the context.

Every failure becomes a :class:`~polyproc.exceptions.SerializationError` naming the object
and the call, raised before anything is sent.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
import threading
import types
from collections.abc import Callable

from ..exceptions import SerializationError

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ByValuePickler",
    "LargeBytes",
    "TransferPickler",
    "TransferUnpickler",
    "describe",
    "dumps",
    "dumps_with_buffers",
    "loads",
    "main_is_importable",
    "reducer_table",
    "register_reducer",
    "register_transfer",
    "wrap_large_bytes",
]

PROTOCOL = pickle.HIGHEST_PROTOCOL

# Reducers for types the standard pickler cannot handle, shared by every pickler here.
_dispatch_table: dict[type, Callable[[Any], Any]] = dict(copyreg.dispatch_table)

# type -> (export(obj, add_fd) -> state, import(state, fds) -> obj) for process starts.
if TYPE_CHECKING:
    _Export = Callable[[Any, Callable[[int], int]], Any]
    _Import = Callable[[Any, list[int]], Any]
_transfers: dict[type, tuple[_Export, _Import]] = {}
# Import side looked up by a stable name, since the class itself may not pickle.
_transfer_imports: dict[str, Callable[[Any, list[int]], Any]] = {}


def register_reducer(cls: type, reducer: Callable[[Any], Any]) -> None:
    """Make every polyproc pickler reduce instances of *cls* with *reducer*."""
    _dispatch_table[cls] = reducer


def reducer_table() -> dict[type, Callable[[Any], Any]]:
    """The live table of reducers every polyproc pickler consults (the one
    :func:`register_reducer` fills): a pickler class that takes it as its
    ``dispatch_table`` pickles registered types as polyproc does. Mutate it only through
    :func:`register_reducer`."""
    return _dispatch_table


def register_transfer(
    cls: type,
    export: Callable[[Any, Callable[[int], int]], Any],
    import_: Callable[[Any, list[int]], Any],
) -> None:
    """Let instances of *cls* be given to a child at process start.

    *export(obj, add_fd)* calls ``add_fd(fd)`` for each descriptor the child needs (it
    returns the descriptor's index in what the child receives; a descriptor added twice is
    sent once) and returns a picklable state; *import_(state, fds)* runs in the child with
    the received descriptors and returns the rebuilt object. It must not keep ``fds[i]``
    itself (the caller closes them after unpickling): it duplicates what it keeps.
    """
    key = f"{cls.__module__}.{cls.__qualname__}"
    _transfers[cls] = (export, import_)
    _transfer_imports[key] = import_


_main_verdict: tuple[object, bool] = (None, False)


def main_is_importable() -> bool:
    """Whether a fresh interpreter can import this process's ``__main__`` again.

    True for a script run as ``python file.py``; false in a notebook, the REPL,
    ``python -c`` and for a package's ``__main__`` (which must not run twice). The answer
    is cached for as long as ``sys.modules["__main__"]`` is the same module.
    """
    global _main_verdict
    main = sys.modules.get("__main__")
    if _main_verdict[0] is main and main is not None:
        return _main_verdict[1]
    verdict = main is not None and getattr(main, "__file__", None) is not None
    if verdict:
        name = getattr(getattr(main, "__spec__", None), "name", None)
        verdict = not (name is not None and (name == "__main__" or name.endswith(".__main__")))
    _main_verdict = (main, verdict)
    return verdict


def _importable_by_reference(obj: Any) -> bool:
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module_name is None or qualname is None or "<" in qualname:
        return False
    if module_name in ("__main__", "__mp_main__") and not main_is_importable():
        return False
    module = sys.modules.get(module_name)
    if module is None:
        return False
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


class ByValuePickler(pickle.Pickler):
    """A pickler that sends non-importable functions and classes by value."""

    dispatch_table = _dispatch_table

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType | type) and not _importable_by_reference(obj):
            import cloudpickle  # only processes that need it pay for the import

            return cloudpickle.loads, (cloudpickle.dumps(obj, protocol=PROTOCOL),)
        return NotImplemented


class _FastPickler(pickle.Pickler):
    dispatch_table = _dispatch_table


def describe(obj: object, limit: int = 80) -> str:
    """A short, safe description of *obj* for error messages."""
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(obj).__qualname__} object>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} (of type {type(obj).__module__}.{type(obj).__qualname__})"


# One reusable fast pickler per thread: creating a Pickler and its buffer costs more
# than pickling a small message.
_local = threading.local()


def _new_thread_pickler(kind: type[pickle.Pickler]) -> tuple[pickle.Pickler, io.BytesIO]:
    buf = io.BytesIO()
    entry = (kind(buf, PROTOCOL), buf)
    setattr(_local, kind.__name__, entry)
    return entry


def dumps(obj: Any, *, context: str = "send") -> bytes:
    """Pickle *obj* for another process.

    *context* names the call for the error message (e.g. ``"Connection.send"``).

    Raises:
        SerializationError: *obj* (or something inside it) cannot be pickled even by
            value; the message names the object and the call.
    """
    # Hot path of every message: a reused pickler per thread, inlined.
    if main_is_importable():
        pickler, buf = getattr(_local, "_FastPickler", None) or _new_thread_pickler(_FastPickler)
        try:
            pickler.dump(obj)
            return buf.getvalue()
        except Exception:
            pass  # retried below, by value
        finally:
            buf.seek(0)
            buf.truncate()
            pickler.clear_memo()
    pickler, buf = getattr(_local, "ByValuePickler", None) or _new_thread_pickler(ByValuePickler)
    try:
        pickler.dump(obj)
        return buf.getvalue()
    except Exception as exc:
        raise _serialization_error(obj, context, exc)  # noqa: B904 - cause set inside
    finally:
        buf.seek(0)
        buf.truncate()
        pickler.clear_memo()


def loads(data: bytes | bytearray | memoryview, buffers: Any = None) -> Any:
    """Unpickle data made by :func:`dumps` (or :func:`dumps_with_buffers`, passing the
    out-of-band *buffers* it returned)."""
    return pickle.loads(data, buffers=buffers)


class LargeBytes:
    """Wraps a big ``bytes`` so that it pickles out of band and unpickles as ``bytes``.

    Pickle always writes ``bytes`` in band; a pool wraps the big ones it can see (the
    arguments and results themselves) so they travel in shared memory like arrays.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        return bytes, (pickle.PickleBuffer(self.data),)


def wrap_large_bytes(values: Any, threshold: int) -> list[Any]:
    """*values* as a list, each ``bytes`` of *threshold* bytes or more wrapped in
    :class:`LargeBytes` (so that it travels out of band)."""
    return [LargeBytes(v) if type(v) is bytes and len(v) >= threshold else v for v in values]


class _BufferCollector:
    """The pickler's buffer_callback: keeps buffers of *threshold* bytes or more out of
    band, the small ones (and any that is not contiguous) in band."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.found: list[memoryview] = []

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:
            return True
        if raw.nbytes < self.threshold:
            return True
        self.found.append(raw)
        return False


def dumps_with_buffers(
    obj: Any, threshold: int, *, context: str = "send"
) -> tuple[bytes, list[memoryview]]:
    """Pickle *obj*, keeping buffers of *threshold* bytes or more out of band.

    Returns the pickle and the out-of-band buffers (views of the original objects, not
    copies), for :func:`loads` to take back.

    Raises:
        SerializationError: as :func:`dumps`.
    """
    entry = getattr(_local, "buffer_picklers", None)
    if entry is None:
        collector = _BufferCollector(threshold)
        buf = io.BytesIO()
        fast = _FastPickler(buf, PROTOCOL, buffer_callback=collector)
        by_value_slot: list[pickle.Pickler | None] = [None]
        entry = _local.buffer_picklers = (collector, buf, fast, by_value_slot)
    collector, buf, fast, by_value = entry
    collector.threshold = threshold
    found: list[memoryview]
    if main_is_importable():  # the hot path: the C pickler, by reference
        collector.found = found = []
        try:
            fast.dump(obj)
            return buf.getvalue(), found
        except Exception:
            pass  # retried below, by value
        finally:
            buf.seek(0)
            buf.truncate()
            fast.clear_memo()
    pickler = by_value[0]
    if pickler is None:
        pickler = by_value[0] = ByValuePickler(buf, PROTOCOL, buffer_callback=collector)
    collector.found = found = []
    try:
        pickler.dump(obj)
        return buf.getvalue(), found
    except Exception as exc:
        raise _serialization_error(obj, context, exc)  # noqa: B904 - cause set inside
    finally:
        buf.seek(0)
        buf.truncate()
        pickler.clear_memo()


# What pickle itself raises for an object it cannot handle; anything else came from the
# object's own __reduce__ or __getstate__ and keeps its type.
_PICKLING_FAILURES = (pickle.PicklingError, TypeError, AttributeError, RecursionError)


def _serialization_error(
    obj: Any, context: str, exc: Exception, pickler: Callable[[Any], pickle.Pickler] | None = None
) -> Exception:
    """The error to raise for *obj* that failed to pickle with *exc*.

    A failure of pickle itself becomes a SerializationError naming the object and the
    call; an exception raised by the object's own pickling code is raised as itself (as
    multiprocessing lets it through), with a note naming the object and the call.
    """
    culprit = _find_culprit(obj, pickler or _by_value_pickler)
    where = "" if culprit is obj else f" because it contains {describe(culprit)}"
    message = f"{context}: cannot pickle {describe(obj)}{where}"
    if isinstance(exc, _PICKLING_FAILURES):
        error = SerializationError(f"{message}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error
    exc.add_note(message)
    return exc


def _by_value_pickler(file: Any) -> pickle.Pickler:
    return ByValuePickler(file, PROTOCOL)


def _find_culprit(obj: Any, pickler: Callable[[Any], pickle.Pickler], depth: int = 0) -> Any:
    """Walk containers to find the innermost object that fails to pickle (error path only).

    Each candidate is tried with the *pickler* that failed: a process start's pickler
    passes what only it may pass (the authkey), which must not be blamed, nor printed.
    """
    if depth > 8:
        return obj
    children: list[Any] = []
    if isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type | types.FunctionType):
        children = list(vars(obj).values())
    for child in children:
        try:
            pickler(io.BytesIO()).dump(child)
        except Exception:
            return _find_culprit(child, pickler, depth + 1)
    return obj


class ChildDescriptors(list[int]):
    """The descriptors a child must receive, holding the objects that own them.

    An object made while pickling (a ``DupFd`` that a registered reducer creates) would
    otherwise be collected, closing its descriptor, before the child has received it:
    keep this list until the descriptors are passed.
    """

    __slots__ = ("owners",)

    def __init__(self) -> None:
        super().__init__()
        self.owners: list[Any] = []


class TransferPickler(ByValuePickler):
    """The pickler of a process start: collects descriptors of transferable objects.

    After :meth:`dump`, :attr:`fds` holds the descriptors the child must receive, in the
    order :class:`TransferUnpickler` expects them (and the objects that own them).
    """

    def __init__(self, file: Any) -> None:
        super().__init__(file, PROTOCOL)
        self.fds = ChildDescriptors()
        self._index: dict[int, int] = {}

    def _add_fd(self, fd: int) -> int:
        index = self._index.get(fd)
        if index is None:
            index = self._index[fd] = len(self.fds)
            self.fds.append(fd)
        return index

    def persistent_id(self, obj: Any) -> Any:
        transfer = _transfers.get(type(obj))
        if transfer is None:
            return None
        self.fds.owners.append(obj)
        cls = type(obj)
        key = f"{cls.__module__}.{cls.__qualname__}"
        return ("polyproc-transfer", key, transfer[0](obj, self._add_fd))


class TransferUnpickler(pickle.Unpickler):
    """Rebuilds, in a child, what :class:`TransferPickler` pickled in the parent."""

    def __init__(self, file: Any, fds: list[int]) -> None:
        super().__init__(file)
        self._fds = fds

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 3 and pid[0] == "polyproc-transfer"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        import_ = _transfer_imports.get(pid[1])
        if import_ is None:
            raise pickle.UnpicklingError(f"no transfer registered for {pid[1]}")
        return import_(pid[2], self._fds)


def dumps_for_child(obj: Any, *, context: str) -> tuple[bytes, list[int]]:
    """Pickle *obj* for a process being started; return the bytes and descriptors to pass.

    The descriptors stay open for as long as the returned list is kept (see
    :class:`ChildDescriptors`): keep it until they are passed.

    Raises:
        SerializationError: as :func:`dumps`.
    """
    buf = io.BytesIO()
    pickler = TransferPickler(buf)
    try:
        pickler.dump(obj)
    except Exception as exc:
        raise _serialization_error(obj, context, exc, TransferPickler)  # noqa: B904
    return buf.getvalue(), pickler.fds


def loads_in_child(data: bytes | bytearray | memoryview, fds: list[int]) -> Any:
    """Unpickle what :func:`dumps_for_child` made, given the received descriptors."""
    return TransferUnpickler(io.BytesIO(data), fds).load()
