"""Pipe, Connection, Listener/Client and wait, with authentication and bad input."""

from __future__ import annotations

import array
import socket
import threading
import time

import pytest

import polyproc
from polyproc.connection import Client, Listener, wait
from polyproc.exceptions import AuthenticationError, BufferTooShort, SerializationError
from tests import _workers
from tests._support import SHORT_TIMEOUT


@pytest.mark.parametrize("duplex", [True, False])
def test_pipe_moves_objects_and_bytes(duplex):
    """send/recv and send_bytes/recv_bytes in one process."""
    a, b = polyproc.Pipe(duplex)
    b.send({"x": [1, 2, 3]})
    assert {"x": [1, 2, 3]} == a.recv()
    b.send_bytes(b"hello world", 6, 5)
    assert b"world" == a.recv_bytes()
    big = bytes(range(256)) * 4096
    threading.Thread(target=b.send_bytes, args=(big,)).start()
    assert big == a.recv_bytes()
    assert a.readable and b.writable
    assert duplex == a.writable == b.readable


def test_one_way_pipe_refuses_the_wrong_direction():
    """A duplex=False pipe raises OSError when used backwards."""
    r, w = polyproc.Pipe(duplex=False)
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        w.recv()


def test_recv_bytes_into():
    """recv_bytes_into fills a buffer at an offset, or raises BufferTooShort with the data."""
    a, b = polyproc.Pipe()
    buf = array.array("i", [0] * 5)
    b.send_bytes(array.array("i", [1, 2, 3]))
    assert 12 == a.recv_bytes_into(buf, 4)
    assert [0, 1, 2, 3, 0] == buf.tolist()
    b.send_bytes(b"x" * 100)
    with pytest.raises(BufferTooShort) as info:
        a.recv_bytes_into(bytearray(10))
    assert b"x" * 100 == info.value.args[0]
    with pytest.raises(ValueError):
        a.recv_bytes_into(bytearray(10), 11)


def test_send_bytes_bounds_are_checked():
    """Offsets and sizes outside the buffer raise ValueError and send nothing."""
    a, b = polyproc.Pipe()
    for offset, size in [(-1, None), (11, None), (0, -1), (5, 6)]:
        with pytest.raises(ValueError):
            b.send_bytes(b"0123456789", offset, size)
    assert not a.poll(0)


def test_poll_and_eof():
    """poll honours its timeout; a closed peer gives EOFError after the last message."""
    a, b = polyproc.Pipe()
    started = time.monotonic()
    assert not a.poll(0.05)
    assert time.monotonic() - started >= 0.04
    b.send("last")
    b.close()
    assert a.poll(SHORT_TIMEOUT)
    assert "last" == a.recv()
    with pytest.raises(EOFError):
        a.recv()


def test_closed_connection_raises_oserror():
    """Every operation on a closed connection raises OSError; close is idempotent."""
    a, _b = polyproc.Pipe()
    a.close()
    a.close()
    assert a.closed
    for call in (a.recv, a.fileno, a.poll, lambda: a.send(1), a.recv_bytes):
        with pytest.raises(OSError):
            call()


def test_context_manager_closes():
    """A connection used as a context manager is closed at the end of the block."""
    a, _b = polyproc.Pipe()
    with a:
        pass
    assert a.closed


def test_unpicklable_send_raises_and_connection_stays_usable():
    """send() of an unpicklable object names it, sends nothing, and the pipe still works."""
    a, b = polyproc.Pipe()
    with pytest.raises(SerializationError, match=r"Connection\.send.*_thread\.lock"):
        b.send({"ok": 1, "lock": threading.Lock()})
    assert not a.poll(0)
    b.send("still fine")
    assert "still fine" == a.recv()


def test_lambdas_travel_over_a_pipe():
    """Functions that cannot be pickled by reference go by value."""
    a, b = polyproc.Pipe()
    b.send(lambda x: x + 1)
    assert 3 == a.recv()(2)


def test_pipe_between_processes(ctx):
    """A Connection given as a Process argument works in the child, both ways."""
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=_workers.recv_and_reply, args=(child_end,))
    p.start()
    for obj in [1, "two", (3.0,), None]:
        parent_end.send(obj)
        if obj is not None:
            assert parent_end.poll(SHORT_TIMEOUT)
            assert obj == parent_end.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode


@pytest.mark.parametrize("family", ["AF_UNIX", "AF_INET"])
def test_listener_and_client_with_authkey(family):
    """Listener/Client connect and authenticate with the same key."""
    with Listener(family=family, authkey=b"secret") as listener:
        accepted: list = []
        t = threading.Thread(target=lambda: accepted.append(listener.accept()))
        t.start()
        with Client(listener.address, authkey=b"secret") as client:
            t.join(SHORT_TIMEOUT)
            server = accepted[0]
            client.send("ping")
            assert "ping" == server.recv()
            server.send_bytes(b"pong")
            assert b"pong" == client.recv_bytes()
            assert listener.last_accepted is not None
            server.close()


def test_wrong_authkey_fails_on_both_sides():
    """Different keys raise AuthenticationError in accept() and in Client()."""
    with Listener(authkey=b"right") as listener:
        errors: list = []

        def serve():
            try:
                listener.accept()
            except AuthenticationError as exc:
                errors.append(exc)

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(AuthenticationError):
            Client(listener.address, authkey=b"wrong")
        t.join(SHORT_TIMEOUT)
        assert len(errors) == 1


def test_silent_peer_cannot_hold_the_listener():
    """A peer that connects and says nothing fails accept() after the handshake timeout."""
    with Listener(authkey=b"k", handshake_timeout=0.2) as listener:
        silent = socket.socket(socket.AF_UNIX)
        silent.connect(listener.address)
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match="in time"):
            listener.accept()
        assert time.monotonic() - started < SHORT_TIMEOUT
        silent.close()
        # The listener still serves a legitimate client.
        accepted: list = []
        t = threading.Thread(target=lambda: accepted.append(listener.accept()))
        t.start()
        with Client(listener.address, authkey=b"k"):
            t.join(SHORT_TIMEOUT)
        accepted[0].close()


@pytest.mark.parametrize(
    "garbage",
    [b"\x7f\xff\xff\xff" + b"x" * 16, b"\x00\x00\x00\x04abcd", b"\xff\xff\xff\xff"],
    ids=["oversized", "wrong-answer", "negative-length"],
)
def test_garbage_peer_is_rejected_without_unpickling(garbage):
    """Oversized or malformed handshake frames raise AuthenticationError at once."""
    with Listener(authkey=b"k") as listener:
        peer = socket.socket(socket.AF_UNIX)
        peer.connect(listener.address)
        peer.sendall(garbage)
        with pytest.raises(AuthenticationError):
            listener.accept()
        peer.close()


def test_listener_rejects_bad_arguments():
    """A non-bytes authkey or an unknown family is refused at the call."""
    with pytest.raises(TypeError):
        Listener(authkey="text")
    with pytest.raises(ValueError):
        Listener(family="AF_BOGUS")


def test_wait_returns_ready_objects():
    """wait() returns the connections that are ready, and [] on timeout."""
    a, b = polyproc.Pipe()
    c, d = polyproc.Pipe()
    assert [] == wait([a, c], 0.01)
    d.send(1)
    assert [c] == wait([a, c], SHORT_TIMEOUT)
    b.close()
    assert {id(a), id(c)} == {id(x) for x in wait([a, c], SHORT_TIMEOUT)}


def test_connections_and_sockets_can_be_sent_to_a_running_process(ctx):
    """A Connection or socket sent over a Pipe after start arrives working."""
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=_workers.use_sent_connection_and_socket, args=(child_end,))
    p.start()
    mine, theirs = ctx.Pipe()
    sock_mine, sock_theirs = socket.socketpair()
    parent_end.send((theirs, sock_theirs))
    theirs.close()
    sock_theirs.close()
    assert mine.poll(SHORT_TIMEOUT)
    assert "hello over a sent connection" == mine.recv()
    assert b"hello over a sent socket" == sock_mine.recv(100)
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    sock_mine.close()


def test_a_sent_connection_can_be_received_once():
    """The key of a shared descriptor works once; a replay gets OSError, not a hang."""
    import pickle

    a, _b = polyproc.Pipe()
    data = pickle.dumps(a)
    first = pickle.loads(data)
    with pytest.raises(OSError):
        pickle.loads(data)
    first.close()


def test_sockets_stay_blocking_under_a_default_timeout():
    """socket.setdefaulttimeout() must not make Pipe or Client descriptors non-blocking."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.05)
    try:
        a, b = polyproc.Pipe()
        threading.Thread(target=lambda: b.send_bytes(b"x" * 1_000_000)).start()
        assert 1_000_000 == len(a.recv_bytes())
    finally:
        socket.setdefaulttimeout(old)


def test_windows_pipe_addresses_are_refused():
    """An AF_PIPE address is a ValueError here, as in multiprocessing on Linux."""
    with pytest.raises(ValueError, match="AF_PIPE"):
        Listener(r"\\.\test")


def test_challenge_functions_authenticate_one_direction():
    """deliver_challenge/answer_challenge: the documented half-handshakes."""
    from polyproc.connection import answer_challenge, deliver_challenge

    a, b = polyproc.Pipe()
    t = threading.Thread(target=answer_challenge, args=(b, b"key"))
    t.start()
    deliver_challenge(a, b"key")
    t.join(SHORT_TIMEOUT)
    errors: list = []

    def answer_wrong():
        try:
            answer_challenge(b, b"other")
        except AuthenticationError as exc:
            errors.append(exc)

    t = threading.Thread(target=answer_wrong)
    t.start()
    with pytest.raises(AuthenticationError):
        deliver_challenge(a, b"key")
    t.join(SHORT_TIMEOUT)
    assert len(errors) == 1


def test_recv_timeout_when_the_peer_died_but_a_copy_of_its_end_is_open(ctx):
    """The peer is killed before sending; this process still holds the peer's end, so no
    end of file ever comes: ``recv(timeout=)`` raises TimeoutError instead of waiting
    forever, and the connection stays usable."""
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_workers.exit_abruptly, args=(3,))
    child.start()  # `theirs` stays open here: the trap
    child.join(SHORT_TIMEOUT)
    assert 3 == child.exitcode
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no message within 0\.2 s"):
        mine.recv(timeout=0.2)
    assert 0.15 < time.monotonic() - started < SHORT_TIMEOUT
    with pytest.raises(TimeoutError):
        mine.recv_bytes(timeout=0.0)
    theirs.send({"still": "usable"})
    assert {"still": "usable"} == mine.recv(timeout=SHORT_TIMEOUT)
    sender = threading.Thread(target=theirs.send_bytes, args=(b"x" * 1_000_000,))
    sender.start()  # larger than the socket buffer: received while it is being sent
    assert 1_000_000 == len(mine.recv_bytes(timeout=SHORT_TIMEOUT))
    sender.join(SHORT_TIMEOUT)


def test_recv_timeout_on_a_message_cut_off_half_way_closes_the_connection():
    """A header that promises more than ever arrives: TimeoutError, and the connection is
    closed, since the stream can no longer be parsed."""
    import os
    import struct

    mine, theirs = polyproc.Pipe()
    os.write(theirs.fileno(), struct.pack("!i", 100) + b"only ten b")
    with pytest.raises(TimeoutError, match="did not finish"):
        mine.recv(timeout=0.2)
    assert mine.closed
