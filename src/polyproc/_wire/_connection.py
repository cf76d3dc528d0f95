"""The framed, blocking, unbuffered connection behind ``Pipe``, ``Listener`` and ``Client``.

Wire format: each message is a 4-byte big-endian signed length followed by the payload;
a payload of 2 GiB or more is announced by the length -1 and an 8-byte unsigned length.
A connection owns one descriptor (a socket for duplex pipes and listeners, a pipe end
otherwise) and reads it without buffering ahead, so several processes may share a
descriptor under a lock and each message still goes to exactly one reader.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from .._os._wait import wait_readable
from ..exceptions import BufferTooShort
from . import _pickling
from ._fd_sharing import fetch_fd, offer_fd

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["Connection", "make_pipe", "wait"]

_HEADER = struct.Struct("!i")
_LONG_HEADER = struct.Struct("!Q")
_SMALL = 16 * 1024  # below this, header and payload go out in one write


class Connection:
    """One end of a two-way (or one-way) message channel between processes.

    ``send``/``recv`` move picklable objects; ``send_bytes``/``recv_bytes`` move raw
    bytes. Every method raises ``OSError`` once the connection is closed, and ``EOFError``
    from a receive when the other end has closed and nothing is left to read.
    """

    __slots__ = ("__weakref__", "_handle", "_readable", "_writable")

    def __init__(self, handle: int, readable: bool = True, writable: bool = True) -> None:
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        handle = handle.__index__()
        if handle < 0:
            raise ValueError("invalid handle")
        self._handle: int | None = handle
        self._readable = readable
        self._writable = writable

    # -- state ---------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._handle is None

    @property
    def readable(self) -> bool:
        """True if this end can receive."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if this end can send."""
        return self._writable

    def fileno(self) -> int:
        """The descriptor of this end.

        Raises:
            OSError: the connection is closed.
        """
        return self._check_open()

    def close(self) -> None:
        """Close this end; the other end then reads ``EOFError``. Idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            os.close(handle)

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        """Pickle as a claim on a duplicate of the descriptor (see ``_fd_sharing``).

        The process that unpickles it receives its own descriptor; this end stays open.
        """
        address, key = offer_fd(self._check_open())
        return _rebuild_shared_connection, (address, key, self._readable, self._writable)

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"handle={self._handle}"
        mode = ("r" if self._readable else "") + ("w" if self._writable else "")
        return f"<polyproc.connection.Connection {state} mode={mode}>"

    def _check_open(self) -> int:
        if self._handle is None:
            raise OSError("handle is closed")
        return self._handle

    def _check_writable(self) -> int:
        handle = self._check_open()
        if not self._writable:
            raise OSError("connection is read-only")
        return handle

    def _check_readable(self) -> int:
        handle = self._check_open()
        if not self._readable:
            raise OSError("connection is write-only")
        return handle

    # -- sending -------------------------------------------------------------------
    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send the bytes of *buf* (any buffer) as one message, optionally a slice of it.

        Raises:
            ValueError: *offset* or *size* falls outside the buffer.
            OSError: closed, read-only, or the other end is gone (``BrokenPipeError``).
        """
        handle = self._check_writable()
        view = memoryview(buf)
        if view.itemsize > 1 or not view.c_contiguous:
            view = view.cast("B")
        n = len(view) if view.ndim else view.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        _write_message(handle, view[offset : offset + size])

    def send(self, obj: Any) -> None:
        """Pickle *obj* and send it.

        Raises:
            SerializationError: *obj* cannot be pickled; nothing was sent and the
                connection stays usable.
            OSError: as :meth:`send_bytes`.
        """
        handle = self._check_writable()
        _write_message(handle, _pickling.dumps(obj, context="Connection.send"))

    # -- receiving -----------------------------------------------------------------
    def recv_bytes(self, maxlength: int | None = None, *, timeout: float | None = None) -> bytes:
        """Receive one message as bytes.

        *timeout* (seconds, a polyproc extension) bounds the whole receive; ``None`` waits
        without limit, as multiprocessing does.

        Raises:
            OSError: closed, write-only, or the message is longer than *maxlength* (the
                connection is then closed, since the stream can no longer be parsed).
            EOFError: the other end closed and nothing is left.
            TimeoutError: *timeout* passed (see :meth:`recv`).
        """
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        handle = self._check_readable()
        if timeout is not None:
            return bytes(self._recv_within(handle, timeout, maxlength))
        size = _read_size(handle)
        if maxlength is not None and size > maxlength:
            self.close()
            raise OSError("bad message length")
        return bytes(_read_exact(handle, size))

    def _recv_within(
        self, handle: int, timeout: float, maxlength: int | None = None
    ) -> bytes | bytearray:
        """One whole message, or TimeoutError once *timeout* seconds have passed."""
        deadline = time.monotonic() + timeout
        if not wait_readable([handle], timeout):
            raise TimeoutError(
                f"Connection.recv: no message within {timeout} s (if the sending process "
                "died, another copy of its end is still open somewhere, often in this "
                "process: close it after starting the child)"
            )
        try:
            size = _read_size(handle, deadline)
            if maxlength is not None and size > maxlength:
                self.close()
                raise OSError("bad message length")
            return _read_exact(handle, size, deadline)
        except TimeoutError:
            # Part of a message was read: the stream can no longer be parsed.
            self.close()
            raise TimeoutError(
                f"Connection.recv: a message started but did not finish within {timeout} s;"
                " the connection was closed"
            ) from None

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Receive one message into the writable buffer *buf* at byte *offset*.

        Returns the message size in bytes.

        Raises:
            BufferTooShort: the message does not fit; ``args[0]`` holds the message.
            ValueError: *offset* is negative or beyond the end of *buf*.
        """
        handle = self._check_readable()
        with memoryview(buf) as view:
            nbytes = view.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            if offset > nbytes:
                raise ValueError("offset too large")
            size = _read_size(handle)
            if size > nbytes - offset:
                raise BufferTooShort(bytes(_read_exact(handle, size)))
            target = view.cast("B")[offset : offset + size]
            _read_into(handle, target)
            return size

    def recv(self, *, timeout: float | None = None) -> Any:
        """Receive one message and unpickle it.

        *timeout* (seconds, a polyproc extension) bounds the wait: a process whose peer
        died while some process still holds a copy of the peer's end never sees end of
        file, and ``recv()`` would wait forever, as in multiprocessing. ``None`` (the
        default) waits without limit.

        Raises:
            EOFError: the other end closed and nothing is left.
            TimeoutError: no whole message arrived within *timeout* seconds. If nothing
                had arrived, the connection stays usable; if a message was cut off half
                way, the connection is closed.
        """
        handle = self._check_readable()
        if timeout is not None:
            return _pickling.loads(self._recv_within(handle, timeout))
        return _pickling.loads(_read_exact(handle, _read_size(handle)))

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether a message (or end of file) is ready, waiting up to *timeout* seconds.

        ``None`` waits without limit.
        """
        handle = self._check_readable()
        return bool(wait_readable([handle], timeout))


def _write_message(handle: int, payload: memoryview | bytes) -> None:
    size = len(payload) if isinstance(payload, bytes) else payload.nbytes
    if size > 0x7FFFFFFF:
        header = _HEADER.pack(-1) + _LONG_HEADER.pack(size)
    else:
        header = _HEADER.pack(size)
    if size <= _SMALL:
        _write_all(handle, header + payload)
    else:
        _write_all(handle, header)
        _write_all(handle, payload)


def _write_all(handle: int, data: bytes | memoryview) -> None:
    written = os.write(handle, data)
    if written == len(data):
        return
    view = memoryview(data).cast("B")
    total = view.nbytes
    while written < total:
        written += os.write(handle, view[written:])


def _read_size(handle: int, deadline: float | None = None) -> int:
    header = _read_exact(handle, 4, deadline)
    (size,) = _HEADER.unpack(header)
    if size == -1:
        (size,) = _LONG_HEADER.unpack(_read_exact(handle, 8, deadline))
    elif size < 0:
        raise OSError(f"corrupt message header: length {size}")
    return int(size)


def _read_exact(handle: int, size: int, deadline: float | None = None) -> bytes | bytearray:
    """Read exactly *size* bytes; EOFError if the stream ends first, TimeoutError if
    *deadline* (a time.monotonic() value) passes first."""
    if size == 0:
        return b""
    if deadline is not None:
        buf = bytearray(size)
        _read_into(handle, memoryview(buf), deadline)
        return buf
    if size > _SMALL:
        # Large: one buffer, filled in place (a first os.read would allocate and shrink
        # a second buffer of the full size).
        buf = bytearray(size)
        _read_into(handle, memoryview(buf))
        return buf
    chunk = os.read(handle, size)
    got = len(chunk)
    if got == size:
        return chunk
    if got == 0:
        raise EOFError
    buf = bytearray(size)
    buf[:got] = chunk
    _read_into(handle, memoryview(buf)[got:])
    return buf


def _read_into(handle: int, view: memoryview, deadline: float | None = None) -> None:
    total = view.nbytes
    pos = 0
    while pos < total:
        if deadline is not None and not wait_readable(
            [handle], max(0.0, deadline - time.monotonic())
        ):
            raise TimeoutError
        got = os.readv(handle, [view[pos:]])
        if got == 0:
            raise EOFError
        pos += got


def make_pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Return two connected ends; with *duplex* false, the first only receives."""
    if duplex:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Blocking descriptors, whatever socket.setdefaulttimeout() says.
        left.setblocking(True)
        right.setblocking(True)
        return Connection(left.detach()), Connection(right.detach())
    read_fd, write_fd = os.pipe()
    return Connection(read_fd, writable=False), Connection(write_fd, readable=False)


def _export_connection(
    conn: Connection, add_fd: Callable[[int], int]
) -> tuple[int, bool, bool]:
    return add_fd(conn._check_open()), conn.readable, conn.writable


def _import_connection(state: tuple[int, bool, bool], fds: list[int]) -> Connection:
    index, readable, writable = state
    return Connection(os.dup(fds[index]), readable, writable)


def _rebuild_shared_connection(
    address: str, key: bytes, readable: bool, writable: bool
) -> Connection:
    return Connection(fetch_fd(address, key), readable, writable)


# At a process start the descriptor travels with the request; afterwards, through the
# sender's fd server (Connection.__reduce__).
_pickling.register_transfer(Connection, _export_connection, _import_connection)


def wait(object_list: Any, timeout: float | None = None) -> list[Any]:
    """Wait until at least one of *object_list* is ready; return the ready ones.

    Each object is a :class:`Connection` (ready when a message or end of file is
    waiting), a socket, a process sentinel, or anything with ``fileno()``. With
    *timeout* seconds passed and nothing ready, returns an empty list; ``None`` waits
    without limit.
    """
    objects = list(object_list)
    by_fd: dict[int, list[Any]] = {}
    for obj in objects:
        fd = obj if isinstance(obj, int) else obj.fileno()
        by_fd.setdefault(fd, []).append(obj)
    ready_fds = set(wait_readable(list(by_fd), timeout))
    return [obj for obj in objects if (obj if isinstance(obj, int) else obj.fileno()) in ready_fds]


def _export_socket(sock: socket.socket, add_fd: Callable[[int], int]) -> int:
    return add_fd(sock.fileno())


def _import_socket(index: int, fds: list[int]) -> socket.socket:
    return socket.socket(fileno=os.dup(fds[index]))


def _reduce_socket(sock: socket.socket) -> Any:
    return _rebuild_shared_socket, offer_fd(sock.fileno())


def _rebuild_shared_socket(address: str, key: bytes) -> socket.socket:
    return socket.socket(fileno=fetch_fd(address, key))


# Sockets travel like connections, as multiprocessing lets them.
_pickling.register_transfer(socket.socket, _export_socket, _import_socket)
_pickling.register_reducer(socket.socket, _reduce_socket)
