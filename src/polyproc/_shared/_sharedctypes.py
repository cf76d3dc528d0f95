"""ctypes objects in shared memory: RawValue, RawArray, Value, Array and their wrappers.

A raw object is a ctypes instance laid over a block of the shared heap (``_heap``), so
every process that has it sees the same bytes. ``Value`` and ``Array`` wrap one with a
lock (an :class:`~._synchronize.RLock` unless told otherwise) taken around every access
to ``value`` and to items, as in multiprocessing.
"""

from __future__ import annotations

import ctypes

from .._wire import _pickling
from . import _heap
from ._synchronize import RLock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Array",
    "RawArray",
    "RawValue",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedBase",
    "SynchronizedString",
    "Value",
    "copy",
    "synchronized",
]

TYPECODES: dict[str, Any] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}


def _ctype_of(typecode_or_type: Any) -> Any:
    if isinstance(typecode_or_type, str):
        try:
            return TYPECODES[typecode_or_type]
        except KeyError:
            raise TypeError(
                f"bad typecode {typecode_or_type!r} (must be one of "
                f"{''.join(TYPECODES)} or a ctypes type)"
            ) from None
    if isinstance(typecode_or_type, type) and issubclass(
        typecode_or_type, ctypes._SimpleCData | ctypes.Structure | ctypes.Union | ctypes.Array
    ):
        return typecode_or_type
    raise TypeError(f"{typecode_or_type!r} is neither a typecode nor a ctypes type")


def _on_block(type_: Any, block: _heap.Block) -> Any:
    obj = type_.from_buffer(block.segment.map, block.offset)
    obj._polyproc_block = block  # keeps the block (and so the memory) alive
    _pickling.register_reducer(type_, _reduce_ctype)
    return obj


def _new(type_: Any) -> Any:
    return _on_block(type_, _heap.allocate(ctypes.sizeof(type_)))


def _reduce_ctype(obj: Any) -> Any:
    if isinstance(obj, ctypes.Array):
        block = obj._polyproc_block  # type: ignore[attr-defined]
        return _rebuild_ctype, (obj._type_, block, obj._length_)
    return _rebuild_ctype, (type(obj), obj._polyproc_block, None)


def _rebuild_ctype(type_: Any, block: _heap.Block, length: int | None) -> Any:
    if length is not None:
        type_ = type_ * length
    return _on_block(type_, block)


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A ctypes object in shared memory, initialised with *args*; no lock.

    Raises:
        TypeError: unknown typecode, or arguments the ctypes type refuses.
    """
    obj = _new(_ctype_of(typecode_or_type))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A ctypes array in shared memory: *size* zeroes, or a copy of a sequence; no lock.

    Raises:
        TypeError: unknown typecode.
        ValueError: a negative size.
    """
    type_ = _ctype_of(typecode_or_type)
    if isinstance(size_or_initializer, int):
        if size_or_initializer < 0:
            raise ValueError("array size must be >= 0")
        return _new(type_ * size_or_initializer)
    values = list(size_or_initializer)
    obj = _new(type_ * len(values))
    obj.__init__(*values)
    return obj


def _wrap(obj: Any, lock: Any) -> Any:
    if lock is False:
        return obj
    if lock in (True, None):
        lock = RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return synchronized(obj, lock)


def Value(typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
    """A shared ctypes value, wrapped with a lock unless *lock* is False.

    *lock* may also be an existing Lock or RLock to use.

    Raises:
        TypeError: unknown typecode.
        AttributeError: *lock* is neither a boolean nor something with ``acquire``.
    """
    return _wrap(RawValue(typecode_or_type, *args), lock)


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
    """A shared ctypes array, wrapped with a lock unless *lock* is False (see :func:`Value`)."""
    return _wrap(RawArray(typecode_or_type, size_or_initializer), lock)


def copy(obj: Any) -> Any:
    """A new shared object with the same type and contents as the ctypes object *obj*."""
    new_obj = _new(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


def synchronized(obj: Any, lock: Any = None) -> Any:
    """Wrap the ctypes object *obj* so that every access takes *lock* (a new RLock if None)."""
    if isinstance(obj, SynchronizedBase):
        raise TypeError("object is already synchronized")
    lock = lock if lock is not None else RLock()
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock)
        return SynchronizedArray(obj, lock)
    return _structure_wrapper(type(obj))(obj, lock)


class SynchronizedBase:
    """A shared ctypes object and the lock that guards it."""

    def __init__(self, obj: Any, lock: Any = None) -> None:
        self._obj = obj
        self._lock = lock if lock is not None else RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        self._lock.__exit__(*args)

    def __reduce__(self) -> Any:
        return synchronized, (self._obj, self._lock)

    def get_obj(self) -> Any:
        """The wrapped ctypes object (accessing it directly takes no lock)."""
        return self._obj

    def get_lock(self) -> Any:
        """The lock guarding the object."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj}>"


class Synchronized(SynchronizedBase):
    """A shared scalar: ``value`` is read and written under the lock."""

    # acquire/release rather than `with`: this is the hot path of counters shared between
    # processes, and the two bound C methods cost less than __enter__/__exit__.
    @property
    def value(self) -> Any:
        self.acquire()
        try:
            return self._obj.value
        finally:
            self.release()

    @value.setter
    def value(self, value: Any) -> None:
        self.acquire()
        try:
            self._obj.value = value
        finally:
            self.release()


class SynchronizedArray(SynchronizedBase):
    """A shared array: items and slices are read and written under the lock."""

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, index: Any) -> Any:
        with self._lock:
            return self._obj[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        with self._lock:
            self._obj[index] = value


class SynchronizedString(SynchronizedArray):
    """A shared char array with ``value`` (up to the first NUL) and ``raw`` (all bytes)."""

    @property
    def value(self) -> bytes:
        with self._lock:
            return bytes(self._obj.value)

    @value.setter
    def value(self, value: bytes) -> None:
        with self._lock:
            self._obj.value = value

    @property
    def raw(self) -> bytes:
        with self._lock:
            return bytes(self._obj.raw)

    @raw.setter
    def raw(self, value: bytes) -> None:
        with self._lock:
            self._obj.raw = value


_structure_wrappers: dict[type, type] = {}


def _structure_wrapper(type_: type) -> type:
    """A Synchronized subclass with a locked property for each field of a Structure."""
    wrapper = _structure_wrappers.get(type_)
    if wrapper is None:
        fields = [field[0] for field in getattr(type_, "_fields_", ())]
        namespace = {name: _locked_field(name) for name in fields}
        wrapper = type("Synchronized" + type_.__name__, (SynchronizedBase,), namespace)
        _structure_wrappers[type_] = wrapper
    return wrapper


def _locked_field(name: str) -> property:
    def get(self: SynchronizedBase) -> Any:
        with self._lock:
            return getattr(self._obj, name)

    def set_(self: SynchronizedBase, value: Any) -> None:
        with self._lock:
            setattr(self._obj, name, value)

    return property(get, set_)
