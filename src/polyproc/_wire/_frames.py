"""Framed messages over a stream socket, large buffers passed in shared memory.

A pool and its workers talk through one Unix stream socket each. This module turns that
byte stream into messages cheaply: many frames go out in one ``sendmsg``, and one
``recvmsg`` takes in everything that has arrived, so a busy pool pays a system call per
burst of messages rather than per message.

Wire form of a frame::

    !QI header: payload length, buffer count N
    N x !Q      sizes of the out-of-band buffers
    payload     (a pickle, for the pool)

A frame with buffers (pickle protocol 5 out-of-band data: numpy arrays, bytearrays, big
bytes) is sent together with one memfd (``SCM_RIGHTS``) holding those buffers back to back.
The sender copies each buffer once into the memfd and closes its descriptor as soon as
the message is sent; the receiver maps the memfd and unpickles straight from the mapping,
so a large array crosses with one copy instead of the four of a pipe. The memory goes away
with the last mapping: nothing can be left behind in /dev/shm.
"""

from __future__ import annotations

import array
import collections
import mmap
import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    #: A payload and the out-of-band buffers that go with it.
    Frame = tuple[bytes | memoryview, Sequence[memoryview]]

__all__ = ["FrameSocket"]

_HEADER = struct.Struct("!QI")
_SIZE = struct.Struct("!Q")
_READ_SIZE = 256 * 1024
_MAX_FDS_PER_SEND = 200  # the kernel takes at most 253 descriptors in one message
_ANCILLARY_SIZE = socket.CMSG_SPACE(_MAX_FDS_PER_SEND * array.array("i").itemsize)


def _pack_buffers(buffers: Sequence[memoryview]) -> int:
    """A new memfd holding *buffers* back to back; the caller closes it."""
    fd = os.memfd_create("polyproc-buffers", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, sum(b.nbytes for b in buffers))
        offset = 0
        for buffer in buffers:
            view = buffer.cast("B") if buffer.format != "B" else buffer
            while view:
                written = os.pwrite(fd, view, offset)
                offset += written
                view = view[written:]
    except BaseException:
        os.close(fd)
        raise
    return fd


class FrameSocket:
    """One end of a stream socket carrying frames. Not thread-safe: one reader, and the
    writers must hold a lock of their own."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._rest = b""  # the start of a frame not yet complete
        self._big: bytearray | None = None  # a frame too big for one read, being filled
        self._big_filled = 0
        self._fds: collections.deque[int] = collections.deque()

    def fileno(self) -> int:
        """The socket's descriptor (for poll)."""
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket and any received descriptor not yet claimed by a frame."""
        self._sock.close()
        while self._fds:
            os.close(self._fds.popleft())

    # -- sending ------------------------------------------------------------------------
    def send(self, frames: Sequence[Frame]) -> None:
        """Send *frames* in order, as few system calls as the descriptors allow.

        Raises:
            OSError: the peer is gone (``BrokenPipeError``) or the socket is closed.
        """
        parts: list[bytes | memoryview] = []
        fds: list[int] = []
        try:
            for payload, buffers in frames:
                if buffers:
                    fds.append(_pack_buffers(buffers))
                    parts.append(_HEADER.pack(len(payload), len(buffers)))
                    parts.extend(_SIZE.pack(b.nbytes) for b in buffers)
                else:
                    parts.append(_HEADER.pack(len(payload), 0))
                parts.append(payload)
                if len(fds) >= _MAX_FDS_PER_SEND:
                    self._send_parts(parts, fds)
                    parts, fds = [], []
            if parts:
                self._send_parts(parts, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _send_parts(self, parts: list[bytes | memoryview], fds: list[int]) -> None:
        data = b"".join(parts)
        if not fds:
            self._sock.sendall(data)
            return
        try:
            sent = self._sock.sendmsg(
                [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            )
            if sent < len(data):
                self._sock.sendall(memoryview(data)[sent:])
        finally:
            for fd in fds:
                os.close(fd)
            fds.clear()

    # -- receiving ----------------------------------------------------------------------
    def receive(self) -> list[tuple[memoryview, list[memoryview]]]:
        """The frames completed by one read (blocks only if nothing has arrived).

        Each frame is its payload and the views of its out-of-band buffers (kept mapped
        for as long as a view, or an object built on one, is alive).

        Raises:
            EOFError: the peer closed its end (or died).
        """
        if self._big is not None:
            return self._fill_big()
        data, ancillary, _flags, _address = self._sock.recvmsg(_READ_SIZE, _ANCILLARY_SIZE)
        self._take_fds(ancillary)
        if not data:
            raise EOFError("the peer closed the connection")
        if self._rest:
            data, self._rest = self._rest + data, b""
        return self._parse(data)

    def _take_fds(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                self._fds.extend(fds)

    def _fill_big(self) -> list[tuple[memoryview, list[memoryview]]]:
        assert self._big is not None
        view = memoryview(self._big)[self._big_filled :]
        received, ancillary, _flags, _address = self._sock.recvmsg_into([view], _ANCILLARY_SIZE)
        self._take_fds(ancillary)
        if not received:
            raise EOFError("the peer closed the connection in the middle of a message")
        self._big_filled += received
        if self._big_filled < len(self._big):
            return []
        data, self._big = self._big, None
        return self._parse(data)

    def _parse(self, data: bytes | bytearray) -> list[tuple[memoryview, list[memoryview]]]:
        view = memoryview(data)
        end = len(data)
        position = 0
        frames = []
        while end - position >= _HEADER.size:
            size, count = _HEADER.unpack_from(data, position)
            head = _HEADER.size + count * _SIZE.size
            total = head + size
            if end - position < total:
                if total > _READ_SIZE:  # read the rest straight into its own buffer
                    self._big = bytearray(total)
                    self._big[: end - position] = view[position:]
                    self._big_filled = end - position
                    position = end
                break
            sizes = struct.unpack_from(f"!{count}Q", data, position + _HEADER.size)
            frames.append((view[position + head : position + total], self._map(sizes)))
            position += total
        if position < end:
            self._rest = bytes(view[position:])
        return frames

    def _map(self, sizes: tuple[int, ...]) -> list[memoryview]:
        if not sizes:
            return []
        fd = self._fds.popleft()
        if not sum(sizes):
            os.close(fd)
            return [memoryview(b"") for _ in sizes]
        try:
            mapping = mmap.mmap(fd, sum(sizes))
        finally:
            os.close(fd)
        whole = memoryview(mapping)
        views = []
        offset = 0
        for size in sizes:
            views.append(whole[offset : offset + size])
            offset += size
        return views
