"""Blocks of shared memory, as in :mod:`multiprocessing.heap`.

The memory comes from polyproc's shared heap (``_shared._heap``): memfd segments the kernel
frees with their last user, so nothing is left in /dev/shm however the processes end.

* :class:`BufferWrapper` is what ``sharedctypes``-style code allocates: a block of *size*
  bytes whose :meth:`~BufferWrapper.create_memoryview` every process that has the wrapper
  sees the same bytes through (a forked child by inheritance, any other process by
  receiving the pickled wrapper: at its start or later through a connection or queue).
* :class:`Heap` hands out blocks as ``(arena, start, stop)`` and takes them back with
  :meth:`~Heap.free`.
* :class:`Arena` is one shared mapping (``buffer``, ``size``, ``fd``).

A block returns to the heap when it is freed (or its wrapper collected) in the process that
allocated it; other processes using it must have the allocating process keep it meanwhile.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import weakref

from ._os._memfd import Segment
from ._shared import _heap as _shared_heap

__all__ = ["Arena", "BufferWrapper", "Heap"]


class Arena:
    """A shared mapping of *size* bytes backed by a memfd.

    With *fd* given (an open memfd or file of at least *size* bytes), maps it instead of
    creating one, and takes ownership of it. ``buffer`` is the ``mmap``; an arena pickles
    so that the receiving process maps the same memory.

    Raises:
        ValueError: *size* is not positive.
        OSError: the memory cannot be created or mapped.
    """

    __slots__ = ("__weakref__", "_segment")

    def __init__(self, size: int, fd: int = -1) -> None:
        self._segment = Segment(size) if fd == -1 else Segment(size, fd=fd)
        _shared_heap.add_segment(self._segment)
        _arenas[self._segment.token] = self

    @classmethod
    def _of(cls, segment: Segment) -> Arena:
        """The arena of *segment* (one per segment in each process)."""
        arena = _arenas.get(segment.token)
        if arena is None or arena._segment is not segment:
            arena = cls.__new__(cls)
            arena._segment = segment
            _arenas[segment.token] = arena
        return arena

    @property
    def size(self) -> int:
        """The size of the mapping in bytes."""
        return self._segment.size

    @property
    def fd(self) -> int:
        """The descriptor of the memory (owned by the arena)."""
        return self._segment.fd

    @property
    def buffer(self) -> mmap.mmap:
        """The shared, writable mapping."""
        return self._segment.map

    def __reduce__(self) -> tuple[object, tuple[Segment]]:
        # The segment travels with a process start, or through the fd server later.
        return _arena_of, (self._segment,)

    def __repr__(self) -> str:
        return f"<polyproc.heap.Arena size={self.size} fd={self.fd}>"


def _arena_of(segment: Segment) -> Arena:
    return Arena._of(segment)


# token -> the Arena of that segment in this process.
_arenas: weakref.WeakValueDictionary[bytes, Arena] = weakref.WeakValueDictionary()


def _check_size(size: int) -> int:
    size = size.__index__()
    if size < 0:
        raise ValueError(f"Size {size:n} out of range")
    if size >= sys.maxsize:
        raise OverflowError(f"Size {size:n} too large")
    return size


class Heap:
    """Allocates blocks of shared memory; all instances share polyproc's one heap.

    *size* (the standard library's first arena size) is accepted for compatibility: the
    shared heap sizes its segments itself.
    """

    _alignment = _shared_heap.ALIGNMENT

    def __init__(self, size: int = mmap.PAGESIZE) -> None:
        self._lock = threading.Lock()
        # (segment token, offset) -> the Block, kept alive until free().
        self._allocated: dict[tuple[bytes, int], _shared_heap.Block] = {}
        _heaps.add(self)

    def malloc(self, size: int) -> tuple[Arena, int, int]:
        """A zero-filled block of at least *size* bytes, as ``(arena, start, stop)``.

        Raises:
            ValueError: *size* is negative.
            OverflowError: *size* is ``sys.maxsize`` or more.
            OSError: the memory cannot be created.
        """
        block = _shared_heap.allocate(_check_size(size))
        with self._lock:
            self._allocated[(block.segment.token, block.offset)] = block
        return Arena._of(block.segment), block.offset, block.offset + block.size

    def free(self, block: tuple[Arena, int, int]) -> None:
        """Give back a block :meth:`malloc` returned; the next user finds it zeroed.

        Freeing a block twice, or one this heap did not allocate, does nothing.
        """
        arena, start, _stop = block
        with self._lock:
            # The heap takes the block back when the last reference to it goes.
            self._allocated.pop((arena._segment.token, start), None)

    def _after_fork_in_child(self) -> None:
        # The parent's blocks are the parent's to free; the child only inherits the memory.
        self._lock = threading.Lock()
        self._allocated = {}


_heaps: weakref.WeakSet[Heap] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for each in list(_heaps):
        each._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class BufferWrapper:
    """*size* bytes of shared memory, zero-filled.

    Pickles so that the receiving process sees the same bytes; the memory returns to the
    heap when the wrapper is collected in the process that created it.

    Raises:
        ValueError: *size* is negative.
        OverflowError: *size* is ``sys.maxsize`` or more.
        OSError: the memory cannot be created.
    """

    __slots__ = ("_block", "_size")

    _heap = Heap()

    def __init__(self, size: int) -> None:
        self._size = _check_size(size)
        self._block = _shared_heap.allocate(self._size)

    def create_memoryview(self) -> memoryview:
        """A writable memoryview of exactly the wrapper's bytes."""
        return self._block.view()

    @property
    def _state(self) -> tuple[tuple[Arena, int, int], int]:
        """``((arena, start, stop), size)``, the standard library's view of the block."""
        block = self._block
        return (Arena._of(block.segment), block.offset, block.offset + block.size), self._size

    def __reduce__(self) -> tuple[object, tuple[_shared_heap.Block, int]]:
        return _rebuild_wrapper, (self._block, self._size)

    def __repr__(self) -> str:
        return f"<polyproc.heap.BufferWrapper size={self._size}>"


def _rebuild_wrapper(block: _shared_heap.Block, size: int) -> BufferWrapper:
    wrapper = BufferWrapper.__new__(BufferWrapper)
    wrapper._block = block
    wrapper._size = size
    return wrapper
