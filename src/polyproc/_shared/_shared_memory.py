"""Named shared memory: ``SharedMemory`` and ``ShareableList``.

A :class:`SharedMemory` is a POSIX shared memory object: on Linux, a file in /dev/shm
(``os.open`` with ``O_CREAT | O_EXCL``, mode 0o600, ``ftruncate``), mapped with ``mmap``.
Any process that knows the name can attach it, polyproc's or not; it pickles as its name,
so passing one to a ``Process`` attaches it again in the child. The descriptor is closed as
soon as the segment is mapped: a process may hold many segments without using up its
descriptors.

A segment lives until someone unlinks it. The creating process registers it with the
application's tracker (``_shm_tracker``), which unlinks it when the application's main
process ends if nobody did: nothing is left in /dev/shm, even after a SIGKILL.

A :class:`ShareableList` keeps a fixed number of ``int``/``float``/``bool``/``str``/
``bytes``/``None`` values in one segment. Its layout is polyproc's own (the standard
library's ``ShareableList`` cannot attach one, nor the reverse); every field is 8-byte
aligned::

    header   8s magic b"polyPSL1", Q item count
    table    per item: I slot capacity, I value length (str and bytes), B kind, 7x
    slots    per item: capacity bytes (a multiple of 8, at least 8), in item order

An item's slot never changes size: a str or bytes value assigned later must fit the slot
sized for the item's first value (its UTF-8 length rounded up to 8 bytes, at least 8); any
other type fits any slot. Like the standard library's, a ShareableList has no lock: a
reader racing a writer of the same item may see a torn value.

Where it deliberately differs from the standard library: the exact length of str and
bytes values is stored, so trailing NUL characters survive (the standard library strips
them, a documented bug); a value of another type raises ``TypeError`` (not ``KeyError``),
an int outside 64 bits ``OverflowError`` (not ``struct.error``), in both cases before any
block is created; subclasses of the supported types (an ``IntEnum``) are stored as their
base type.
"""

from __future__ import annotations

import mmap
import operator
import os
import struct
import types

from . import _shm_tracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any, TypeAlias

    Item: TypeAlias = int | float | bool | str | bytes | None

__all__ = ["ShareableList", "SharedMemory"]

_PREFIX = "psm_"  # random names look like the standard library's: psm_ and 8 hex digits
_MODE = 0o600
_CREATE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW
_ATTACH_FLAGS = os.O_RDWR | os.O_NOFOLLOW


class SharedMemory:
    """A block of memory that processes share by name.

    ``SharedMemory(name=None, create=False, size=0)`` creates a new block of *size* bytes
    (*create* true; a random ``psm_...`` name if *name* is ``None``) or attaches the
    existing block *name* (its real size is used; *size* is ignored). A leading ``/`` in
    *name* is accepted, as POSIX ``shm_open`` does.

    Raises:
        ValueError: *size* is negative, or zero with *create*; *name* is ``None`` without
            *create*; *name* holds a NUL character.
        FileExistsError: *create* and a block *name* exists.
        FileNotFoundError: not *create* and no block *name* exists.
        OSError: *name* is not a valid name (``EINVAL``: empty, or a ``/`` after the
            leading ones; ``ENAMETOOLONG``: over 255 bytes); /dev/shm refused (``ENOSPC``,
            ``EACCES``...).
    """

    # Class-level defaults so that close() and __del__ work on a half-built object.
    _buf: memoryview | None = None
    _mmap: mmap.mmap | None = None
    _name = ""
    _size = 0

    def __init__(self, name: str | None = None, create: bool = False, size: int = 0) -> None:
        size = operator.index(size)
        if size < 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"'name' must be a str, not {type(name).__name__}")
        if create:
            name, fd, file_name = _create_file(name, size)
        else:
            assert name is not None
            file_name = _shm_tracker.check_name(name)
            fd = os.open(_path(file_name), _ATTACH_FLAGS)
        try:
            size = os.fstat(fd).st_size
            # mmap refuses an empty file (ValueError), as the standard library's does.
            self._mmap = mmap.mmap(fd, size)
        except BaseException:
            if create:
                _remove(file_name)
            raise
        finally:
            os.close(fd)  # the mapping keeps the memory; the descriptor is not needed
        self._name = name
        self._file_name = file_name
        self._size = size
        self._buf = memoryview(self._mmap)

    @property
    def buf(self) -> memoryview | None:
        """A writable memoryview of the block's contents (``None`` after :meth:`close`)."""
        return self._buf

    @property
    def name(self) -> str:
        """The block's name, as given (or generated) at creation."""
        return self._name

    @property
    def size(self) -> int:
        """The block's size in bytes."""
        return self._size

    def close(self) -> None:
        """Unmap the block from this process; it stays for the others. Idempotent.

        Raises:
            BufferError: something still uses :attr:`buf` (a numpy array, a memoryview
                slice); release it first.
        """
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None

    def unlink(self) -> None:
        """Remove the block's name: no process can attach it any more.

        The memory itself is freed when the last process unmaps it. Call it once, in one
        process, when no process needs to attach the block again.

        Raises:
            FileNotFoundError: the block was already unlinked.
        """
        os.unlink(_path(self._file_name))
        _shm_tracker.unregister(self._file_name)

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, BufferError):
            pass  # an exported buffer keeps the mapping alive; it unmaps with its user

    def __reduce__(self) -> tuple[type[SharedMemory], tuple[str, bool, int]]:
        return self.__class__, (self.name, False, self.size)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"


def _path(file_name: bytes) -> bytes:
    return os.path.join(os.fsencode(_shm_tracker.SHM_DIR), file_name)


def _create_file(name: str | None, size: int) -> tuple[str, int, bytes]:
    """Create the segment file of *size* bytes and register it; return name, fd, file."""
    while True:
        candidate = name if name is not None else _PREFIX + os.urandom(4).hex()
        file_name = _shm_tracker.check_name(candidate)
        try:
            fd = os.open(_path(file_name), _CREATE_FLAGS, _MODE)
            break
        except FileExistsError:
            if name is not None:
                raise
            # A random name that is taken: draw another.
    try:
        # Registered first, so that only a kill within these few microseconds can leak it.
        _shm_tracker.register(file_name, os.fstat(fd).st_ino)
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        _remove(file_name)
        raise
    return candidate, fd, file_name


def _remove(file_name: bytes) -> None:
    """Undo a creation that failed half-way."""
    try:
        os.unlink(_path(file_name))
    except OSError:
        pass
    _shm_tracker.unregister(file_name)


# ---------------------------------------------------------------------------------------
# ShareableList

_MAGIC = b"polyPSL1"
_HEADER = struct.Struct("<8sQ")
_ENTRY = struct.Struct("<IIB7x")
_ALIGN = 8
# Documented limit of the standard library: str and bytes values under 10M bytes each.
_MAX_BYTES = 10_000_000

_NONE, _BOOL, _INT, _FLOAT, _STR, _BYTES = range(6)
# What `format` shows for each kind (str and bytes: "<capacity>s"); the numbers use the
# first 8 bytes of their slot, so unpacking `format` over the slots gives the values back
# whenever each item sits in a slot of its own size.
_FORMATS = {_NONE: "xxxxxx?x", _BOOL: "xxxxxxx?", _INT: "q", _FLOAT: "d"}
_INT_STRUCT = struct.Struct("q")
_FLOAT_STRUCT = struct.Struct("d")


def _encode(value: Item) -> tuple[int, bytes]:
    """The kind and stored bytes of *value*.

    Raises:
        TypeError: not an int, float, bool, str, bytes or None.
        OverflowError: an int outside the signed 64-bit range.
        ValueError: a str (encoded as UTF-8) or bytes of 10M bytes or more.
    """
    if value is None:
        return _NONE, bytes(_ALIGN)
    if isinstance(value, bool):
        return _BOOL, bytes(_ALIGN - 1) + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        try:
            return _INT, _INT_STRUCT.pack(int(value))
        except struct.error:
            raise OverflowError(
                f"ShareableList holds signed 64-bit ints; {value} does not fit"
            ) from None
    if isinstance(value, float):
        return _FLOAT, _FLOAT_STRUCT.pack(float(value))
    if isinstance(value, str):
        kind, data = _STR, value.encode("utf-8")
    elif isinstance(value, bytes):
        kind, data = _BYTES, bytes(value)
    else:
        raise TypeError(
            "ShareableList holds only int, float, bool, str, bytes and None,"
            f" not {type(value).__name__}"
        )
    if len(data) >= _MAX_BYTES:
        raise ValueError(f"ShareableList {type(value).__name__} values must be under 10M bytes")
    return kind, data


def _capacity(data: bytes) -> int:
    return max(_ALIGN, -(-len(data) // _ALIGN) * _ALIGN)


def _attach_list(cls: type[ShareableList], name: str) -> ShareableList:
    """Unpickle a ShareableList: attach it again by name."""
    return cls(name=name)


class ShareableList:
    """A fixed-length list of ``int``/``float``/``bool``/``str``/``bytes``/``None`` values
    in shared memory.

    ``ShareableList(sequence)`` creates one holding *sequence*'s values (in a block named
    *name* if given, else a random one); ``ShareableList(name=name)`` attaches an existing
    one. Values can be read and replaced by index; the length never changes and slicing is
    not supported. ``shm`` is the underlying :class:`SharedMemory`: ``shm.close()`` when
    done, ``shm.unlink()`` once when no process needs it.

    Raises:
        TypeError: a value of another type.
        OverflowError: an int outside the signed 64-bit range.
        ValueError: a str (as UTF-8) or bytes of 10M bytes or more; *name* is not a
            ShareableList; see :class:`SharedMemory` for the errors of the block itself.
    """

    def __class_getitem__(cls, item: Any) -> types.GenericAlias:
        return types.GenericAlias(cls, item)

    def __init__(self, sequence: Iterable[Item] | None = None, *, name: str | None = None):
        if sequence is None and name is not None:
            self.shm = SharedMemory(name)
            self._read_layout()
        else:
            self._create(list(sequence) if sequence is not None else [], name)

    def _create(self, values: list[Item], name: str | None) -> None:
        # Encode everything before creating the block: a bad value leaves nothing behind.
        encoded = [_encode(value) for value in values]
        capacities = [_capacity(data) for _, data in encoded]
        table_end = _HEADER.size + _ENTRY.size * len(values)
        self.shm = SharedMemory(name, create=True, size=table_end + sum(capacities))
        try:
            buf = self._buffer()
            _HEADER.pack_into(buf, 0, _MAGIC, len(values))
            self._layout(capacities, table_end)
            for index, (kind, data) in enumerate(encoded):
                self._store(buf, index, kind, data, 0)
        except BaseException:
            self.shm.close()
            self.shm.unlink()
            raise

    def _read_layout(self) -> None:
        buf = self._buffer()
        size = len(buf)
        try:
            if size < _HEADER.size:
                raise ValueError
            magic, count = _HEADER.unpack_from(buf, 0)
            table_end = _HEADER.size + _ENTRY.size * count
            if magic != _MAGIC or table_end > size:
                raise ValueError
            capacities = [
                _ENTRY.unpack_from(buf, _HEADER.size + _ENTRY.size * i)[0] for i in range(count)
            ]
            if table_end + sum(capacities) > size or any(
                c < _ALIGN or c % _ALIGN for c in capacities
            ):
                raise ValueError
        except ValueError:
            self.shm.close()
            raise ValueError(
                f"shared memory {self.shm.name!r} does not hold a ShareableList"
            ) from None
        self._layout(capacities, table_end)

    def _layout(self, capacities: list[int], table_end: int) -> None:
        self._capacities = capacities
        self._offsets = []
        offset = table_end
        for capacity in capacities:
            self._offsets.append(offset)
            offset += capacity

    def _buffer(self) -> memoryview:
        buf = self.shm.buf
        if buf is None:
            raise ValueError("the ShareableList's shared memory is closed")
        return buf

    def _entry(self, buf: memoryview, index: int) -> tuple[int, int]:
        """The (kind, length) of item *index*."""
        _cap, length, kind = _ENTRY.unpack_from(buf, _HEADER.size + _ENTRY.size * index)
        return kind, length

    def _store(self, buf: memoryview, index: int, kind: int, data: bytes, old: int) -> None:
        """Write item *index*; *old* is how many bytes its previous value used."""
        start = self._offsets[index]
        buf[start : start + len(data)] = data
        if old > len(data):  # keep the unused end of a slot zeroed
            buf[start + len(data) : start + old] = bytes(old - len(data))
        length = len(data) if kind in (_STR, _BYTES) else 0
        _ENTRY.pack_into(
            buf, _HEADER.size + _ENTRY.size * index, self._capacities[index], length, kind
        )

    def _position(self, index: Any, error: str) -> int:
        try:
            position = operator.index(index)
        except TypeError:
            raise TypeError(
                f"ShareableList indices must be integers, not {type(index).__name__}"
            ) from None
        if position < 0:
            position += len(self._offsets)
        if not 0 <= position < len(self._offsets):
            raise IndexError(error)
        return position

    def __getitem__(self, index: int) -> Item:
        """The value at *index* (negative counts from the end).

        Raises:
            IndexError: out of range.
            TypeError: *index* is not an integer (slices are not supported).
        """
        position = self._position(index, "index out of range")
        buf = self._buffer()
        kind, length = self._entry(buf, position)
        start = self._offsets[position]
        if kind == _INT:
            return int(_INT_STRUCT.unpack_from(buf, start)[0])
        if kind == _FLOAT:
            return float(_FLOAT_STRUCT.unpack_from(buf, start)[0])
        if kind == _BOOL:
            return bool(buf[start + _ALIGN - 1])
        if kind == _NONE:
            return None
        data = bytes(buf[start : start + min(length, self._capacities[position])])
        if kind == _STR:
            return data.decode("utf-8")
        if kind == _BYTES:
            return data
        raise ValueError(f"ShareableList item {position} is corrupt (kind {kind})")

    def __setitem__(self, index: int, value: Item) -> None:
        """Replace the value at *index*.

        Raises:
            IndexError: out of range.
            ValueError: a str or bytes longer than the slot (the slot of the first value
                stored there, rounded up to 8 bytes).
            TypeError, OverflowError: as for the values of a new ShareableList.
        """
        position = self._position(index, "assignment index out of range")
        kind, data = _encode(value)
        if len(data) > self._capacities[position]:
            raise ValueError("bytes/str item exceeds available storage")
        buf = self._buffer()
        old_kind, old_length = self._entry(buf, position)
        old = old_length if old_kind in (_STR, _BYTES) else _ALIGN
        self._store(buf, position, kind, data, old)

    def __len__(self) -> int:
        return len(self._offsets)

    def __iter__(self) -> Iterator[Item]:
        for position in range(len(self._offsets)):
            yield self[position]

    def __reduce__(self) -> tuple[Any, tuple[type[ShareableList], str]]:
        return _attach_list, (self.__class__, self.shm.name)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self)}, name={self.shm.name!r})"

    def _get_packing_format(self, position: int) -> str:
        """The struct format of the item at *position* (see :attr:`format`)."""
        position = self._position(position, "index out of range")
        kind, _length = self._entry(self._buffer(), position)
        fixed = _FORMATS.get(kind)
        return fixed if fixed is not None else f"{self._capacities[position]}s"

    @property
    def format(self) -> str:
        """The struct format of all the values, as the standard library spells it.

        ``q`` an int, ``d`` a float, ``xxxxxxx?`` a bool, ``xxxxxx?x`` None, ``<n>s`` a
        str or bytes in a slot of *n* bytes.
        """
        return "".join(self._get_packing_format(i) for i in range(len(self._offsets)))

    def count(self, value: Any) -> int:
        """How many items equal *value*."""
        return sum(1 for item in self if item == value)

    def index(self, value: Any) -> int:
        """The position of the first item equal to *value*.

        Raises:
            ValueError: no item equals *value*.
        """
        for position, item in enumerate(self):
            if item == value:
                return position
        raise ValueError(f"{value!r} not in this container")
