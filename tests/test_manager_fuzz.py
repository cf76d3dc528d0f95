"""Fuzzing a running manager server with garbage, before and after authentication.

Each test starts a ``SyncManager`` server (over a Unix socket, and over TCP on 127.0.0.1),
makes a managed dict before any fuzzing, and after every batch of garbage checks that the
server process is alive, that the dict still answers, that a new client can connect, and
that whatever a fuzzing client created was released when it hung up.

The raw clients here speak the wire format by hand (``_wire._connection``: a 4-byte
big-endian signed length, -1 announcing an 8-byte length, then the payload) and the
client half of the mutual HMAC handshake (``_wire._auth``), so they can break either at
any byte. Every read has a deadline, so a server that hangs fails a test, never blocks it.

Two server bugs this fuzzing found have their own tests: an accept loop that stopped for
good after one EMFILE, and a deeply nested request that crashed the server.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import pickle
import resource
import select
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from polyproc._managers import _protocol
from polyproc._managers._protocol import (
    CALL,
    COUNT,
    CREATE,
    DECREF,
    DUMMY,
    ERROR,
    GETVALUE,
    HELLO,
    INCREF,
    INFO,
    MAX_MESSAGE_BYTES,
    METHODS,
    PROXY,
    RETURN,
    SHUTDOWN,
)
from polyproc._wire._auth import (
    CHALLENGE,
    FAILURE,
    HANDSHAKE_TIMEOUT_S,
    MAX_HANDSHAKE_MESSAGE,
    WELCOME,
    answer_challenge,
    authenticate_connecting,
)
from polyproc._wire._connection import Connection
from polyproc._wire._remote_error import unpack_exception
from polyproc.exceptions import AuthenticationError
from polyproc.managers import SyncManager
from tests._support import SHORT_TIMEOUT, wait_until

AUTHKEY = b"polyproc manager fuzz key"
NONCE_BYTES = 32  # the random part of a handshake challenge
SHARED = "<the shared dict's id>"  # replaced by the legitimate dict's object id when sent

# One server serves every example of a test: hypothesis must not worry about the
# function-scoped fixture. No shrinking: once a server is broken every later example
# fails too, so the first failing example (the one that broke it) is the one to report.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)

_tags = itertools.count()


# -- the server under test -------------------------------------------------------------------


@dataclass
class Served:
    """A running manager and the legitimate client's view of it."""

    manager: SyncManager
    family: socket.AddressFamily
    shared: Any  # a managed dict made before any fuzzing
    baseline: int  # objects the server holds before any fuzzing

    @property
    def address(self) -> Any:
        return self.manager.address


@pytest.fixture(params=["unix", "tcp"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A started SyncManager (Unix socket or TCP) with one managed dict in it."""
    tcp = request.param == "tcp"
    manager = SyncManager(address=("127.0.0.1", 0) if tcp else None, authkey=AUTHKEY)
    manager.start()
    srv: Served | None = None
    try:
        srv = Served(manager, socket.AF_INET if tcp else socket.AF_UNIX, manager.dict(), 0)
        srv.baseline = manager._number_of_objects()
        yield srv
    finally:
        if srv is not None:
            srv.shared = None  # released while the server still runs
        manager.shutdown()
        remove_socket_directory(manager)


def remove_socket_directory(manager: SyncManager) -> None:
    """Remove the private directory of the manager's Unix socket, which a server that
    crashed (see the xfail tests below) could not remove itself."""
    address = manager.address
    if isinstance(address, str):
        directory = os.path.dirname(address)
        if os.path.basename(directory).startswith("polyproc-"):
            shutil.rmtree(directory, ignore_errors=True)


def assert_alive(srv: Served) -> None:
    """The server process runs (checked first in every example: hypothesis replays a
    failing example, and a replay finds dead the server its first run killed)."""
    process = srv.manager._process
    assert process is not None and process.is_alive(), (
        f"the manager's server is dead (exit code {getattr(process, 'exitcode', None)})"
    )


def assert_still_serving(srv: Served) -> None:
    """The server is alive, serves the proxy made before the fuzzing, accepts a new
    client, and holds nothing that the fuzzing clients (all gone now) created."""
    assert_alive(srv)
    tag = next(_tags)
    srv.shared["k"] = tag
    assert srv.shared["k"] == tag
    SyncManager(address=srv.address, authkey=AUTHKEY).connect()
    assert wait_until(lambda: srv.manager._number_of_objects() == srv.baseline), (
        "objects created by clients that hung up were not released: "
        f"{srv.manager._debug_info()}"
    )


# -- a raw client ------------------------------------------------------------------------------


def frame(payload: bytes) -> bytes:
    """*payload* framed as a Connection frames it."""
    return struct.pack("!i", len(payload)) + payload


def long_frame(payload: bytes) -> bytes:
    """*payload* framed with the 8-byte length form (legal for any size)."""
    return struct.pack("!iQ", -1, len(payload)) + payload


def is_challenge(message: bytes) -> bool:
    return message.startswith(CHALLENGE) and len(message) == len(CHALLENGE) + NONCE_BYTES


def handshake_messages(data: bytes) -> list[bytes]:
    """Split what a server sent before authentication into handshake messages; anything
    else (a longer message, a partial one, unframed bytes) fails the test."""
    messages = []
    while data:
        assert len(data) >= 4, f"unframed bytes from the server: {data!r}"
        (size,) = struct.unpack_from("!i", data)
        assert 0 <= size <= MAX_HANDSHAKE_MESSAGE and len(data) >= 4 + size, (
            f"not a handshake message: {data!r}"
        )
        messages.append(data[4 : 4 + size])
        data = data[4 + size :]
    return messages


class Peer:
    """A client socket that sends whatever it is told, and reads with a deadline.

    It also has the ``send_bytes``/``recv_bytes`` of a connection, so that
    ``_auth.answer_challenge`` can run the first half of the handshake over it.
    """

    def __init__(self, family: socket.AddressFamily, address: Any) -> None:
        self.family = family
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family != socket.AF_UNIX:  # each message at once, as this client writes it
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.conn: Connection | None = None
        self.was_reset = False  # the server reset the connection (TCP) rather than closed it

    @classmethod
    def to(cls, srv: Served) -> Peer:
        return cls(srv.family, srv.address)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, reset: bool = False) -> None:
        """Hang up; with *reset*, abort a TCP connection (the server reads ECONNRESET)."""
        if reset and self.family != socket.AF_UNIX:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.conn is not None:
            self.conn.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send *data*; the server may already have hung up on us, which is its right."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _recv(self, limit: int, deadline: float) -> bytes:
        """Up to *limit* bytes; b"" once the server closed (or reset) the connection."""
        ready, _, _ = select.select([self.sock], [], [], max(deadline - time.monotonic(), 0))
        assert ready, "the server neither answered nor hung up in time"
        try:
            return self.sock.recv(limit)
        except ConnectionResetError:
            self.was_reset = True
            return b""

    def read_exact(self, size: int, timeout: float = SHORT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        data = b""
        while len(data) < size:
            chunk = self._recv(size - len(data), deadline)
            if not chunk:
                raise EOFError(f"the server hung up after sending {data!r}")
            data += chunk
        return data

    def read_message(self, timeout: float = SHORT_TIMEOUT) -> bytes:
        """One handshake message."""
        deadline = time.monotonic() + timeout
        (size,) = struct.unpack("!i", self.read_exact(4, timeout))
        assert 0 <= size <= MAX_HANDSHAKE_MESSAGE, f"handshake message of {size} bytes"
        return self.read_exact(size, max(deadline - time.monotonic(), 0))

    def read_to_eof(self, timeout: float = SHORT_TIMEOUT) -> bytes:
        """Everything the server sends until it closes the connection."""
        deadline = time.monotonic() + timeout
        chunks = []
        while chunk := self._recv(1 << 16, deadline):
            chunks.append(chunk)
        return b"".join(chunks)

    def hang_up_and_drain(self) -> bytes:
        """Half-close (the server reads end of file), then read what the server sends
        until it closes its end: a server that keeps the connection fails the test."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset by the server
        return self.read_to_eof()

    # The duck-typed connection of _auth's public half-handshakes.
    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(frame(bytes(data)))

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        return self.read_message()

    def authenticate(self) -> Connection:
        """Run the client's side of the handshake; return a Connection on this socket."""
        self.conn = Connection(os.dup(self.sock.fileno()))
        authenticate_connecting(self.conn, AUTHKEY, HANDSHAKE_TIMEOUT_S)
        return self.conn

    def reply(self) -> tuple[Any, Any]:
        """The server's reply to a request (EOFError if it hung up instead)."""
        assert self.conn is not None
        assert self.conn.poll(SHORT_TIMEOUT), "the server did not reply in time"
        status, value = self.conn.recv()
        return status, value


# -- strategies --------------------------------------------------------------------------------

# Bytes that are not a pickle: without the STOP opcode ('.') no unpickler can finish.
not_a_pickle = st.binary(max_size=300).map(lambda b: b.replace(b".", b""))

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=12) | st.binary(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)


def _not_five_items(value: Any) -> bool:
    """Whether *value* cannot unpack into ``op, object_id, name, args, kwds``."""
    try:
        return len(value) != 5
    except TypeError:
        return True


# Pickles of things that are not requests: every one must get an ERROR reply.
wrong_shapes = (
    scalars
    | st.lists(values, max_size=4).map(tuple)
    | st.lists(values, min_size=6, max_size=8).map(tuple)
    | st.lists(values, max_size=4)
    | st.dictionaries(st.text(max_size=3), values, max_size=3)
).filter(_not_five_items)


def _is_shutdown(op: Any) -> bool:
    try:
        return bool(op == SHUTDOWN)
    except Exception:
        return False


# Any op but SHUTDOWN (which any authenticated client may send, by design).
ops = (
    st.sampled_from([HELLO, CALL, CREATE, INCREF, DECREF, GETVALUE, METHODS, INFO, COUNT, DUMMY])
    | st.integers(-3, 40)
    | values
).filter(lambda op: not _is_shutdown(op))
object_ids = st.sampled_from([SHARED, "0", "ffffffff", "", None]) | values
names = (
    # dict methods (of the shared dict), types a client may create (none of them blocks
    # or starts processes), and names nothing answers to
    st.sampled_from([
        "__getitem__", "get", "__contains__", "keys", "pop", "setdefault", "update", "items",
        "__len__", "__repr__", "copy", "dict", "list", "Namespace", "Value", "Array",
        "Iterator", "AsyncResult", "no_such_thing", "__init__", "__class__", "__reduce__",
    ])
    | values
)
arguments = st.lists(values, max_size=3).map(tuple) | values
keywords = st.dictionaries(st.text(max_size=4), values, max_size=2) | values
requests = st.one_of(
    st.tuples(ops, object_ids, names, arguments, keywords),
    # the shared dict's methods (or not), with arguments of any type
    st.tuples(st.sampled_from([CALL, GETVALUE, METHODS, INCREF, DECREF]), st.just(SHARED),
              names, arguments, keywords),
    # objects of harmless types (or of none), with arguments of any type
    st.tuples(st.just(CREATE), object_ids,
              st.sampled_from(["dict", "list", "Namespace", "Value", "Array", "Iterator",
                               "AsyncResult", "no_such_type"]) | values,
              arguments, keywords),
)

# One request on an authenticated connection: (kind, content, long header?)
steps = st.one_of(
    st.tuples(st.just("not a pickle"), not_a_pickle, st.booleans()),
    st.tuples(st.just("wrong shape"), wrong_shapes, st.booleans()),
    st.tuples(st.just("request"), requests, st.booleans()),
    st.tuples(st.just("dummy"), st.none(), st.booleans()),
)


@st.composite
def partial_frames(draw: Any, max_size: int) -> bytes:
    """A frame cut short: part of its header, or its header and part of its payload."""
    size = draw(st.integers(1, max_size))
    if draw(st.booleans()):
        header = struct.pack("!i", size) if draw(st.booleans()) else struct.pack("!iQ", -1, size)
        return header[: draw(st.integers(1, len(header) - 1))]
    return struct.pack("!i", size) + draw(st.binary(max_size=min(size - 1, 200)))


@st.composite
def lengths_over(draw: Any, limit: int) -> bytes:
    """A length header announcing more than *limit* bytes (either form), or a negative
    one, maybe followed by some payload."""
    header = draw(st.one_of(
        st.integers(limit + 1, 2**31 - 1).map(lambda n: struct.pack("!i", n)),
        st.integers(limit + 1, 2**64 - 1).map(lambda n: struct.pack("!iQ", -1, n)),
        st.integers(-(2**31), -2).map(lambda n: struct.pack("!i", n)),
    ))
    return header + draw(st.binary(max_size=64))


def _is_hello(value: Any) -> bool:
    return (isinstance(value, tuple | list) and len(value) == 2 and value[0] == HELLO
            and isinstance(value[1], str))


# What an authenticated client sends where (HELLO, client_id) belongs, framed or not.
bad_greetings = st.one_of(
    not_a_pickle.map(frame),
    (wrong_shapes | requests).filter(lambda v: not _is_hello(v))
    .map(lambda v: frame(pickle.dumps(v))),
    partial_frames(1 << 20),
    lengths_over(MAX_MESSAGE_BYTES),
)

# Endings of a connection: a half-close whose outcome is checked, or an abrupt one.
endings = st.sampled_from(["drain", "close", "reset"])

# Garbage before authentication: (kind, bytes, ending).
preauth_actions = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=600), endings),
    st.tuples(st.just("truncated"), partial_frames(MAX_HANDSHAKE_MESSAGE), endings),
    st.tuples(st.just("huge length"), lengths_over(MAX_HANDSHAKE_MESSAGE), endings),
    st.tuples(
        st.just("oversized message"),
        st.binary(min_size=MAX_HANDSHAKE_MESSAGE + 1, max_size=2048).map(frame),
        endings,
    ),
    st.tuples(st.just("nothing"), st.just(b""), endings),
    # a wrong answer to the server's challenge (a complete message: a FAILURE comes back)
    st.tuples(
        st.just("wrong answer"),
        (st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES)
         | st.binary(max_size=MAX_HANDSHAKE_MESSAGE)).map(frame),
        endings,
    ),
    # the server is answered correctly, then gets garbage where our challenge belongs
    st.tuples(
        st.just("after welcome"),
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=MAX_HANDSHAKE_MESSAGE).map(frame),
            st.binary(max_size=80).filter(lambda b: len(b) != NONCE_BYTES)
            .map(lambda b: frame(CHALLENGE + b)),
        ),
        endings,
    ),
    # the server proves it holds the key, then gets garbage where our verdict belongs
    st.tuples(
        st.just("bad verdict"),
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=MAX_HANDSHAKE_MESSAGE).filter(lambda b: b != WELCOME).map(frame),
            st.just(frame(FAILURE)),
        ),
        endings,
    ),
)

# After the greeting, how the fuzzing client leaves: (kind, bytes).
postauth_endings = st.one_of(
    st.tuples(st.just("goodbye"), st.just(b"")),
    st.tuples(st.just("truncated"), partial_frames(1 << 20)),
    st.tuples(st.just("oversized"), lengths_over(MAX_MESSAGE_BYTES)),
    st.tuples(st.just("close"), st.just(b"")),
    st.tuples(st.just("reset"), st.just(b"")),
)


# -- before authentication ---------------------------------------------------------------------


def _answers_the_challenge(garbage: bytes) -> bool:
    """Whether *garbage* starts with a complete handshake message (the server takes it for
    an answer to its challenge, and says FAILURE)."""
    if len(garbage) < 4:
        return False
    (size,) = struct.unpack_from("!i", garbage)
    return 0 <= size <= MAX_HANDSHAKE_MESSAGE and len(garbage) >= 4 + size


def run_preauth_action(srv: Served, kind: str, garbage: bytes, ending: str) -> None:
    with Peer.to(srv) as peer:
        expected: list[bytes] = []  # what the server says after the exchange below
        if kind == "wrong answer":
            assert is_challenge(peer.read_message())
            expected = [FAILURE]
        elif kind in ("after welcome", "bad verdict"):
            answer_challenge(peer, AUTHKEY)  # reads the challenge, answers, gets WELCOME
            if kind == "bad verdict":
                nonce = os.urandom(NONCE_BYTES)
                peer.send_bytes(CHALLENGE + nonce)
                assert peer.read_message() == hmac.new(AUTHKEY, nonce, hashlib.sha256).digest()
        peer.send(garbage)
        if ending != "drain":
            peer.close(reset=ending == "reset")
            return
        messages = handshake_messages(peer.hang_up_and_drain())
        if kind not in ("wrong answer", "after welcome", "bad verdict"):
            assert messages and is_challenge(messages[0]), messages
            messages = messages[1:]
            if _answers_the_challenge(garbage):
                expected = [FAILURE]
        if peer.was_reset:
            # A TCP server that closes with our garbage unread sends a reset, which may
            # discard a last message it had not sent yet: a prefix is all we can expect.
            expected = expected[: len(messages)]
        assert messages == expected, f"the server said {messages!r} after {garbage!r}"


@pytest.mark.timeout(60)
@FUZZ
@given(batch=st.lists(preauth_actions, min_size=1, max_size=4))
def test_garbage_before_authentication(served: Served, batch: list[Any]) -> None:
    """Random bytes, cut frames, huge or negative lengths, oversized handshake messages,
    wrong answers, garbage in each later step of the handshake, hanging up politely,
    abruptly or with a reset: the server sends nothing but handshake messages, closes
    the connection, and goes on serving everyone else."""
    assert_alive(served)
    for kind, garbage, ending in batch:
        run_preauth_action(served, kind, garbage, ending)
    assert_still_serving(served)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=10)
@given(key=st.binary(max_size=100).filter(lambda k: k != AUTHKEY))
def test_wrong_authkey_is_refused(served: Served, key: bytes) -> None:
    """A client with another key gets AuthenticationError; the server goes on."""
    assert_alive(served)
    with pytest.raises(AuthenticationError):
        SyncManager(address=served.address, authkey=key).connect()
    assert_still_serving(served)


@pytest.mark.timeout(60)
def test_a_crowd_of_misbehaving_peers_does_not_hold_up_others(served: Served) -> None:
    """Forty peers misbehave at once (silent, cut short, lying about lengths, random):
    each gets its challenge, and the legitimate client is served meanwhile."""
    garbage = [
        b"", b"\x00\x00", frame(b"x" * 10)[:-3], struct.pack("!i", 1 << 30),
        struct.pack("!i", -5), os.urandom(64),
    ]
    peers: list[Peer] = []
    try:
        for i in range(40):
            peers.append(Peer.to(served))
            peers[-1].send(garbage[i % len(garbage)])
        for peer in peers:
            assert is_challenge(peer.read_message())
        assert_still_serving(served)
    finally:
        for peer in peers:
            peer.close()
    assert_still_serving(served)


@pytest.mark.timeout(60)
def test_silent_peers_do_not_hold_up_others(served: Served) -> None:
    """While peers that say nothing (or half a frame) hold connections open, the
    legitimate client is served and new clients connect."""
    with Peer.to(served) as mute, Peer.to(served) as stutter, Peer.to(served) as teaser:
        stutter.send(b"\x00\x00")
        teaser.send(struct.pack("!i", 200) + b"0123456789")
        for peer in (mute, stutter, teaser):
            assert is_challenge(peer.read_message())
        assert_still_serving(served)
    assert_still_serving(served)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("served", ["unix"], indirect=True)
def test_silent_peers_are_dropped_at_the_handshake_deadline(served: Served) -> None:
    """A peer that stalls anywhere in the handshake is hung up on once the handshake
    deadline passes (a deadline on the whole handshake, not on each read)."""
    with (Peer.to(served) as mute, Peer.to(served) as stutter, Peer.to(served) as teaser,
          Peer.to(served) as half):
        start = time.monotonic()
        stutter.send(b"\x00\x00")
        teaser.send(struct.pack("!i", 200) + b"0123456789")
        answer_challenge(half, AUTHKEY)  # then never sends its own challenge
        assert_still_serving(served)
        for peer in (mute, stutter, teaser, half):
            said = handshake_messages(peer.read_to_eof(HANDSHAKE_TIMEOUT_S + SHORT_TIMEOUT))
            if peer is half:
                assert said == []  # it already read the challenge and the WELCOME
            else:
                assert len(said) == 1 and is_challenge(said[0]), said
        assert time.monotonic() - start < HANDSHAKE_TIMEOUT_S + SHORT_TIMEOUT / 2
    assert_still_serving(served)


def _lowest_descriptors_in_use(pid: int, limit: int) -> int:
    """How many of the descriptors 0 .. *limit* - 1 process *pid* has open."""
    return sum(1 for fd in os.listdir(f"/proc/{pid}/fd") if int(fd) < limit)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/<pid>/fd")
def test_running_out_of_descriptors_does_not_stop_the_accept_loop() -> None:
    """Silent peers take every descriptor the server may open, so its accept() fails
    with EMFILE; once they are gone, new clients are accepted again."""
    import psutil

    limit = 64  # the server's descriptors (0 .. 63): few enough to use up quickly
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    manager = SyncManager(authkey=AUTHKEY)
    manager.start(resource.setrlimit, (resource.RLIMIT_NOFILE, (limit, hard)))
    peers: list[Peer] = []
    try:
        shared = manager.dict()
        shared["k"] = 1
        pid = manager._process.pid
        server = psutil.Process(pid)
        threads_before = server.num_threads()
        free = limit - _lowest_descriptors_in_use(pid, limit)
        for _ in range(free + 16):  # more peers than the server has descriptors left
            peers.append(Peer(socket.AF_UNIX, manager.address))
        assert wait_until(lambda: _lowest_descriptors_in_use(pid, limit) == limit)
        # Every descriptor is taken (one connection and one handshake thread per accepted
        # peer): the accepter's next accept() fails with EMFILE. An accepter that gives up
        # on it exits, which shows in the thread count; one that carries on does not, and
        # then this wait merely times out.
        wait_until(lambda: server.num_threads() < threads_before + free, timeout=2.0)
        assert shared["k"] == 1  # connections already open are still served
        for peer in peers:
            peer.close()
        assert wait_until(lambda: _lowest_descriptors_in_use(pid, limit) < limit - 2)
        with Peer(socket.AF_UNIX, manager.address) as newcomer:
            try:
                challenge = newcomer.read_message(HANDSHAKE_TIMEOUT_S)
            except AssertionError:
                pytest.fail("the server no longer accepts connections, though it runs and "
                            "has descriptors free again")
            assert is_challenge(challenge)
        SyncManager(address=manager.address, authkey=AUTHKEY).connect()
        assert shared["k"] == 1
    finally:
        for peer in peers:
            peer.close()
        shared = None
        try:  # over the connection the dict used: a new one may never be accepted
            _protocol.call(manager.address, AUTHKEY, (SHUTDOWN, None, None, (), {}))
        except Exception:
            pass
        manager.shutdown()
        remove_socket_directory(manager)


# -- after authentication ----------------------------------------------------------------------


def encode(kind: str, content: Any, long_header: bool, srv: Served) -> bytes:
    """The frame of one step (see ``steps``)."""
    if kind == "not a pickle":
        payload = content
    elif kind == "dummy":
        payload = pickle.dumps((DUMMY, None, None, (), {}))
    elif kind == "request":
        op, object_id, name, args, kwds = content
        if object_id == SHARED:
            object_id = srv.shared._token.id
        payload = pickle.dumps((op, object_id, name, args, kwds))
    else:
        payload = pickle.dumps(content)
    return long_frame(payload) if long_header else frame(payload)


_OP_NAMES = {CALL: "CALL", CREATE: "CREATE", INCREF: "INCREF", DECREF: "DECREF",
             GETVALUE: "GETVALUE", METHODS: "METHODS", INFO: "INFO", COUNT: "COUNT",
             DUMMY: "DUMMY"}


def _label(kind: str, step: Any) -> str:
    """How a step shows in ``--hypothesis-show-statistics``."""
    if kind != "request":
        return kind
    op = step[0]
    if type(op) is int:
        return f"request {_OP_NAMES.get(op, 'unknown op')}"
    return f"request with a {type(op).__name__} op"


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=20)
@given(greeting=bad_greetings)
def test_garbage_instead_of_the_greeting(served: Served, greeting: bytes) -> None:
    """An authenticated client that sends something else than ``(HELLO, client_id)``
    first (not a pickle, a pickle of something else, a cut frame, a length over
    MAX_MESSAGE_BYTES) is hung up on without a word; the server goes on."""
    assert_alive(served)
    with Peer.to(served) as peer:
        peer.authenticate()
        peer.send(greeting)
        assert peer.hang_up_and_drain() == b"", "the server answered a bad greeting"
    assert_still_serving(served)


@pytest.mark.timeout(60)
@settings(FUZZ, max_examples=50)
@given(client=st.text(max_size=12), batch=st.lists(steps, min_size=1, max_size=8),
       ending=postauth_endings)
def test_garbage_after_authentication(
    served: Served, client: Any, batch: list[Any], ending: tuple[str, bytes]
) -> None:
    """An authenticated client, greeted, sends garbage as requests (not pickles, pickles
    of the wrong shape, unknown ops, wrong argument types, nonexistent object ids, the
    8-byte length form): each gets a reply, an ERROR for everything that is not a
    request, and the connection goes on. Then it leaves: politely, mid-frame, with a
    length over MAX_MESSAGE_BYTES (hung up on without a reply), or abruptly. The server
    serves everyone else throughout, and releases what the client created."""
    assert_alive(served)
    assume(client != _protocol.client_id())  # not the legitimate client's id
    with Peer.to(served) as peer:
        peer.authenticate()
        peer.send(frame(pickle.dumps((HELLO, client))))
        assert peer.reply() == (RETURN, None)
        for kind, step, long_header in batch:
            peer.send(encode(kind, step, long_header, served))
            status, value = peer.reply()
            event(f"{_label(kind, step)}: {status}")  # see --hypothesis-show-statistics
            if kind == "dummy":
                assert (status, value) == (RETURN, None)
                continue
            assert status in (RETURN, ERROR, PROXY), status
            if kind in ("not a pickle", "wrong shape"):
                assert status == ERROR, f"{step!r} got {status} {value!r}"
            if status == ERROR:
                assert isinstance(unpack_exception(value), BaseException)
        ending_kind, data = ending
        if ending_kind == "goodbye":
            peer.send(encode("dummy", None, False, served))
            assert peer.reply() == (RETURN, None)
        elif ending_kind in ("close", "reset"):
            peer.close(reset=ending_kind == "reset")
        else:
            peer.send(data)
            assert peer.hang_up_and_drain() == b"", f"the server answered {data!r}"
    assert_still_serving(served)


def _deeply_nested_request(where: str, shared_id: str) -> bytes:
    """A request holding a tuple nested a million deep, as a pickle (built by hand: no
    pickler recurses that far). Pickle protocol 2 opcodes: ``(`` mark, ``)`` empty
    tuple, ``\\x85`` wrap the top of the stack in a 1-tuple, ``t`` tuple from the mark,
    ``N`` None, ``}`` empty dict, ``K`` small int, ``X`` utf-8 string, ``.`` stop."""
    deep = b")" + b"\x85" * 1_000_000

    def text(s: str) -> bytes:
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    if where == "op":
        fields = deep + b"NN)}"
    elif where == "object id":
        fields = bytes([ord("K"), INCREF]) + deep + b"N)}"
    else:
        fields = bytes([ord("K"), CALL]) + text(shared_id) + text("get") + b"(" + deep + b"t}"
    return b"\x80\x02(" + fields + b"t."


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["op", "object id", "argument"])
@pytest.mark.parametrize("served", ["unix"], indirect=True)
def test_deeply_nested_request_gets_an_error_reply(served: Served, where: str) -> None:
    """A request whose pickle nests a million deep gets an error, not a dead server."""
    with Peer.to(served) as peer:
        peer.authenticate()
        peer.send(frame(pickle.dumps((HELLO, "deep nester"))))
        assert peer.reply() == (RETURN, None)
        peer.send(frame(_deeply_nested_request(where, served.shared._token.id)))
        try:
            status, _ = peer.reply()
        except EOFError:
            served.manager._process.join(SHORT_TIMEOUT)
            pytest.fail("the server hung up instead of replying; its exit code: "
                        f"{served.manager._process.exitcode}")
        assert status == ERROR
    assert_still_serving(served)
