"""Functions and types for the child processes of tests/test_stdlib_modules_io.py.

They live at module level in an importable module so that spawn and the fork server can
find them by reference.
"""

from __future__ import annotations

import os
from typing import Any

from polyproc import reduction


class Token:
    """A value that refuses default pickling: it travels only through a registered reducer,
    and remembers how it was rebuilt (``via``)."""

    def __init__(self, value: Any, via: str = "constructor") -> None:
        self.value = value
        self.via = via

    def __reduce__(self) -> Any:
        raise TypeError("Token pickles only through the reducer registered for it")


def reduce_token(token: Token) -> Any:
    """The reducer the tests register for Token."""
    return rebuild_token, (token.value,)


def rebuild_token(value: Any) -> Token:
    """Rebuild a Token, marking that the registered reducer made it."""
    return Token(value, via="reducer")


def describe_token(token: Token) -> tuple[Any, str]:
    """(value, via) of *token*."""
    return token.value, token.via


def report_token(conn: Any, token: Token) -> None:
    """Send back (value, via) of the Token received as an argument."""
    conn.send(describe_token(token))
    conn.close()


def report_queued_token(queue: Any, conn: Any) -> None:
    """Take a Token from *queue*; send back its (value, via)."""
    conn.send(describe_token(queue.get(timeout=30)))
    conn.close()


def write_through_dupfd(dupfd: Any, data: bytes) -> None:
    """Write *data* to the descriptor *dupfd* carries, then close it."""
    fd = dupfd.detach()
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_through_received_dupfd(conn: Any, data: bytes) -> None:
    """Receive a DupFd over *conn*; write *data* through it."""
    write_through_dupfd(conn.recv(), data)
    conn.close()


def recv_handle_and_write(conn: Any, data: bytes) -> None:
    """Receive a descriptor with recv_handle(); write *data* to it."""
    fd = reduction.recv_handle(conn)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    conn.close()


def send_handle_to_parent(conn: Any, data: bytes) -> None:
    """Send the parent, with send_handle(), the read end of a pipe that holds *data*."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    reduction.send_handle(conn, read_fd, os.getppid())
    os.close(read_fd)  # the descriptor in flight stays valid until the parent takes it
    conn.close()


def fill_buffer(wrapper: Any, data: bytes) -> None:
    """Write *data* at the start of a heap.BufferWrapper's memory."""
    wrapper.create_memoryview()[: len(data)] = data


class Writer:
    """The write end of a pipe; it travels with the reducer the tests register, which
    wraps its descriptor in a DupFd (the standard library's idiom)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd


def reduce_writer(writer: Writer) -> Any:
    """The reducer the tests register for Writer."""
    return rebuild_writer, (reduction.DupFd(writer.fd),)


def rebuild_writer(dupfd: Any) -> Writer:
    """A Writer on the receiving process's own duplicate."""
    return Writer(dupfd.detach())


def write_with(writer: Writer, data: bytes) -> None:
    """Write *data* through *writer*."""
    os.write(writer.fd, data)


def fill_arena(arena: Any, data: bytes) -> None:
    """Write *data* at the start of a heap.Arena."""
    arena.buffer[: len(data)] = data
