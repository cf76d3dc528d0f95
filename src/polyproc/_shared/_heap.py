"""A heap of shared memory for small shared objects: lock slots, ctypes values, arrays.

Blocks are carved out of memfd :class:`~polyproc._os._memfd.Segment` s (1 MiB each, or one
of its own for a large block). A block pickles as its segment plus an offset:

* at a process start (spawn, forkserver) the segment's descriptor travels with the start
  request (a *transfer*, see ``_wire._pickling``);
* later, through the sender's fd server (``_wire._fd_sharing``);
* a forked child needs neither: it inherits the mapping.

A receiving process maps each segment once (looked up by its token). A block returns to
the free list of its size when the object that allocated it is collected in the process
that allocated it, unless another process may hold it: a block that was ever pickled, or
that existed when this process forked, is never handed out again (its memory goes with
its segment, once no process maps it). Otherwise a lock dropped by the parent while a
child still used it would be recycled into, say, a new pool's counters under the child.
"""

from __future__ import annotations

import os
import threading
import weakref

from .._os._memfd import Segment
from .._wire import _pickling
from .._wire._fd_sharing import fetch_fd, offer_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Block", "add_segment", "allocate"]

SEGMENT_SIZE = 1 << 20
ALIGNMENT = 64  # a cache line: two locks never share one
PAGE = 4096

# token -> Segment mapped in this process (created here or received).
_segments: weakref.WeakValueDictionary[bytes, Segment] = weakref.WeakValueDictionary()


class Block:
    """*size* bytes at *offset* of a shared *segment*; pickles so that it stays shared."""

    __slots__ = ("__weakref__", "_forks_seen", "_heap_pid", "offset", "segment", "size")

    def __init__(self, segment: Segment, offset: int, size: int) -> None:
        self.segment = segment
        self.offset = offset
        self.size = size
        self._heap_pid = 0  # set by the heap that allocated it; 0: never recycled
        self._forks_seen = _forks

    def view(self) -> memoryview:
        """A writable memoryview of exactly this block."""
        return memoryview(self.segment.map)[self.offset : self.offset + self.size]

    def __reduce__(self) -> tuple[type[Block], tuple[Segment, int, int]]:
        self._heap_pid = 0  # another process may use it from now on: never recycle it
        return Block, (self.segment, self.offset, self.size)

    def __del__(self, _getpid: Callable[[], int] = os.getpid) -> None:
        # os.getpid bound at definition: at interpreter exit the module's globals may
        # already be gone when the last blocks are collected.
        if self._heap_pid == _getpid() and self._forks_seen == _forks:
            _heap.free(self)


class _Heap:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Segment | None = None
        self._used = 0
        self._free: dict[int, list[tuple[Segment, int]]] = {}

    def allocate(self, size: int) -> Block:
        rounded = max(ALIGNMENT, -(-size // ALIGNMENT) * ALIGNMENT)
        if rounded > SEGMENT_SIZE // 4:
            segment = Segment(-(-rounded // PAGE) * PAGE)
            _segments[segment.token] = segment
            block = Block(segment, 0, size)
            return block  # a dedicated segment is freed with its last user
        with self._lock:
            spare = self._free.get(rounded)
            if spare:
                segment, offset = spare.pop()
            else:
                if self._current is None or self._used + rounded > SEGMENT_SIZE:
                    self._current = Segment(SEGMENT_SIZE)
                    _segments[self._current.token] = self._current
                    self._used = 0
                segment, offset = self._current, self._used
                self._used += rounded
        block = Block(segment, offset, size)
        block._heap_pid = os.getpid()
        return block

    def free(self, block: Block) -> None:
        rounded = max(ALIGNMENT, -(-block.size // ALIGNMENT) * ALIGNMENT)
        view = memoryview(block.segment.map)[block.offset : block.offset + rounded]
        view[:] = bytes(rounded)  # the next user starts from zeroes, like a fresh segment
        with self._lock:
            self._free.setdefault(rounded, []).append((block.segment, block.offset))

    def reset_after_fork(self) -> None:
        # The child must not carve blocks from the parent's segments: both would hand
        # out the same offsets.
        self.__init__()  # type: ignore[misc]


_heap = _Heap()
os.register_at_fork(after_in_child=_heap.reset_after_fork)

_forks = 0  # forks made by this process: blocks older than the last one are never recycled


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_parent=_count_fork)


def allocate(size: int) -> Block:
    """A zero-filled shared block of at least *size* bytes, aligned to 64 bytes."""
    return _heap.allocate(size)


def add_segment(segment: Segment) -> None:
    """Let blocks of *segment* (made outside this heap, e.g. a ``heap.Arena``) that come
    back to this process find it, instead of mapping it a second time."""
    _segments[segment.token] = segment


def _adopt(token: bytes, size: int, fd: int) -> Segment:
    segment = _segments.get(token)
    if segment is not None:
        os.close(fd)
        return segment
    segment = Segment(size, fd=fd, token=token)
    _segments[token] = segment
    return segment


def _export_segment(segment: Segment, add_fd: Callable[[int], int]) -> tuple[bytes, int, int]:
    return segment.token, segment.size, add_fd(segment.fd)


def _import_segment(state: tuple[bytes, int, int], fds: list[int]) -> Segment:
    token, size, index = state
    return _adopt(token, size, os.dup(fds[index]))


def _reduce_segment(segment: Segment) -> object:
    # A standing offer: the same pickle may be unpickled more than once (a pool task run
    # again after its worker died), and every pickling of the segment shares one offer.
    address, key = offer_fd(segment.fd, owner=segment)
    return _rebuild_segment, (segment.token, segment.size, address, key)


def _rebuild_segment(token: bytes, size: int, address: str, key: bytes) -> Segment:
    return _adopt(token, size, fetch_fd(address, key))


_pickling.register_transfer(Segment, _export_segment, _import_segment)
_pickling.register_reducer(Segment, _reduce_segment)
