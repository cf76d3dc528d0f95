"""The shared memory tracker: what an application leaves in /dev/shm goes when it ends.

A named segment outlives every process that maps it until someone unlinks it, so a
process killed between ``SharedMemory(create=True)`` and ``unlink()`` would leak it until
the next reboot. One small *tracker* process per application prevents that: it records
the segments the application creates (not those it merely attaches), forgets those it
unlinks, and when the application's main process ends (normally or by SIGKILL) it unlinks
whatever is still recorded and exits. The application's other processes are gone by then:
polyproc kills a child when its parent dies.

Protocol. The tracker reads datagrams from an ``AF_UNIX``/``SOCK_DGRAM`` socket in Linux's
abstract namespace (nothing on disk to clean up)::

    b"R" + inode (8 bytes, little-endian) + name     register a segment we created
    b"U" + name                                      forget it: it was unlinked

A registration is one ``sendto`` and no round trip. Datagrams of one socket are queued in
the order they were sent, whoever sent them, so an unlink in one process is seen after the
creation it follows in another. Names are at most 255 bytes (the kernel's limit for a file
name) and hold no ``/``; anything else, and any datagram from another user (the kernel
attaches the sender's credentials, ``SO_PASSCRED``), is ignored. At the end the tracker
unlinks ``/dev/shm/<name>`` only if it is still the file that was registered (same inode):
a segment unlinked behind our back and created again by someone else is left alone.

Which tracker. A tracker is named after the process it watches (pid namespace, pid and
start time, so a recycled pid never finds a stale tracker): the main process uses the one
named after itself; a child uses the one its environment names (``POLYPROC_SHM_TRACKER``,
set in ``os.environ`` by whoever settled on a tracker, so processes started later inherit
it), and if it has none, the one named after its parent. A child of the fork server, or
one started before the first segment existed, lacks the variable; its parent's tracker is
then usually the application's. When no tracker answers, the process starts one: the main
process one that watches itself, a child one that watches its *parent* (so a segment a
child creates and hands to its parent survives the child). The only consequence: a
segment created by a grandchild that found no tracker lives until that grandchild's parent
ends, not until the main process does. A Python process started some other way (say by
``subprocess``) is a main process of its own, whatever its environment says.

Ending. When the watched process ends, the tracker keeps reading for up to 2 seconds
while processes that registered segments are still alive (polyproc is killing them), so a
segment being created at that instant is recorded too; then it unlinks what is left,
reports it on stderr in the standard library's words ("There appear to be N leaked
shared_memory objects to clean up at shutdown") and exits. It ignores SIGINT, SIGTERM and
SIGHUP: a Ctrl-C or a hang-up that ends the application must not end its cleaner first.
What still leaks: a segment whose creator is killed in the microseconds between creating
the file and sending its registration, and those of a tracker that was itself killed.

Why a fresh interpreter and not a fork. The tracker is started with ``posix_spawn`` of
``python -I -S`` running this very file, which imports nothing but the standard library: a
fork would copy the application's memory and threads' locks, and hold its descriptors
(pipe ends whose EOF someone waits for) for as long as the application lives. The start
costs the creating process no wait: it binds the socket itself and hands it over, so
registrations queue in the socket until the tracker, a few milliseconds later, reads them.

Failure. Registering never raises: if no tracker can be reached or started, the segment is
simply not tracked and a ``RuntimeWarning`` says so once per process. A tracker that died
is replaced by the next creation (segments it held are no longer tracked). A tracker that
reads nothing for 10 seconds (stopped) stalls one creation that long; after that the
process no longer waits for it and registers only while its queue has room.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time

__all__ = [
    "ENV_VAR",
    "MAX_NAME",
    "SHM_DIR",
    "check_name",
    "client_fd",
    "ensure_running",
    "main",
    "register",
    "unregister",
]

SHM_DIR = "/dev/shm"
ENV_VAR = "POLYPROC_SHM_TRACKER"
MAX_NAME = 255  # NAME_MAX: the longest file name the kernel accepts, in bytes

_REGISTER = b"R"
_UNREGISTER = b"U"
_INODE = struct.Struct("<Q")
_MAX_MESSAGE = 1 + _INODE.size + MAX_NAME
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# A full queue makes a send wait for the tracker to read (at start-up, until it runs). A
# tracker that reads nothing for this long is stuck (stopped?): the process then stops
# waiting for it, so create() is stalled once at most. A dead tracker fails at once.
_SEND_TIMEOUT_S = 10.0
# After the watched process ends, the tracker waits this long at most for the other
# processes that registered segments to die (they are being killed), so that a segment
# one of them was creating at that very moment is still recorded and removed.
_LINGER_S = 2.0
_MAX_WATCHED_SENDERS = 256
# A tracker that dies again and again (a broken interpreter?) is not restarted forever.
_MAX_STARTS = 3


def check_name(name: str) -> bytes:
    """The file name in /dev/shm for segment *name* (leading slashes dropped), as bytes.

    Raises:
        OSError: ``EINVAL`` if nothing is left, or it holds a ``/`` or is ``.``/``..``;
            ``ENAMETOOLONG`` if longer than 255 bytes (the errors of POSIX ``shm_open``).
        ValueError: it holds a NUL character.
    """
    stripped = os.fsencode(name).lstrip(b"/")
    if b"\0" in stripped:
        raise ValueError("embedded null character in shared memory name")
    if not stripped or b"/" in stripped or stripped in (b".", b".."):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), name)
    if len(stripped) > MAX_NAME:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
    return stripped


# ---------------------------------------------------------------------------------------
# Client side: runs in the application's processes.


class _Client:
    """This process's way to its tracker."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(_SEND_TIMEOUT_S)
        self.address: str | None = None  # the tracker we settled on
        self.spawned: int | None = None  # pid of a tracker this process started
        self.starts = 0  # trackers this process started, at most _MAX_STARTS
        self.warned = False


_lock = threading.Lock()
_client: _Client | None = None


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock. The rest stays valid: the child uses
    # its parent's tracker (as its environment says) through the inherited socket, but
    # the tracker the parent started is not the child's to reap.
    global _lock
    _lock = threading.Lock()
    if _client is not None:
        _client.spawned = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def register(name: bytes, inode: int) -> None:
    """Have the tracker unlink segment *name* (of *inode*) when the application ends.

    Starts a tracker if none is reachable. Never raises: a failure leaves the segment
    untracked and warns once (``RuntimeWarning``).
    """
    _send(_REGISTER + _INODE.pack(inode) + name, start=True)


def unregister(name: bytes) -> None:
    """Tell the tracker that segment *name* was unlinked; never raises, never starts one."""
    _send(_UNREGISTER + name, start=False)


def ensure_running() -> bool:
    """Make sure this process has a tracker, starting one if none answers.

    Returns whether a tracker was reached. Never raises and never warns: what is not
    tracked is told when a segment is registered.
    """
    global _client
    try:
        with _lock:
            if _client is None:
                _client = _Client()
            # An unregistration of the empty name: a no-op for the tracker, so a probe.
            return _deliver(_client, _UNREGISTER, True)
    except Exception:
        return False


def client_fd() -> int | None:
    """The descriptor of the socket this process talks to its tracker through, or None
    if it has not talked to one yet."""
    client = _client
    return None if client is None else client.sock.fileno()


def _send(message: bytes, *, start: bool) -> None:
    global _client
    client = _client
    try:
        with _lock:
            if _client is None:
                _client = _Client()
            client = _client
            if _deliver(client, message, start):
                return
    except Exception:  # tracking is a safety net: it must never break the caller
        pass
    if start and (client is None or not client.warned):
        if client is not None:
            client.warned = True
        import warnings

        warnings.warn(
            "polyproc could not reach or start its shared memory tracker: a segment created"
            " now is left in /dev/shm if the application is killed before unlinking it",
            RuntimeWarning,
            stacklevel=5,  # _send, register, _create_file, SharedMemory(), the caller
        )


def _deliver(client: _Client, message: bytes, start: bool) -> bool:
    """Send *message* to this process's tracker, finding or starting it; True if sent."""
    if client.address is not None:
        if _try_send(client, client.address, message):
            return True
        client.address = None  # it died
        _reap(client)
    candidates, watched = _candidates()
    for address in candidates:
        if _try_send(client, address, message):
            _settle(client, address)
            return True
    if not start or client.starts >= _MAX_STARTS:
        return False
    client.starts += 1
    started = _start_tracker(client, *watched)
    if started is not None and _try_send(client, started, message):
        _settle(client, started)
        return True
    return False


def _try_send(client: _Client, address: str, message: bytes) -> bool:
    try:
        client.sock.sendto(message, address)
    except (ConnectionRefusedError, FileNotFoundError):
        return False  # nobody listens there (any more)
    except TimeoutError:
        client.sock.setblocking(False)  # from now on a full queue fails the send at once
        raise
    return True


def _settle(client: _Client, address: str) -> None:
    client.address = address
    exported = address.lstrip("\0")
    if os.environ.get(ENV_VAR) != exported:
        os.environ[ENV_VAR] = exported  # for the processes we start from now on


def _reap(client: _Client) -> None:
    if client.spawned is not None:
        try:
            os.waitpid(client.spawned, os.WNOHANG)
        except ChildProcessError:
            pass
        client.spawned = None


def _candidates() -> tuple[list[str], tuple[str, int]]:
    """Tracker addresses to try in order, and (address, pidfd) of the one to start."""
    from .._process._state import runtime

    parent = runtime.parent
    if parent is None:  # a main process: its own tracker, whatever the environment says
        address = _address_of(os.getpid())
        return [address], (address, runtime.self_handle())
    candidates = []
    inherited = os.environ.get(ENV_VAR)
    if inherited:
        candidates.append("\0" + inherited)
    address = _address_of(parent.pid)
    candidates.append(address)
    return candidates, (address, parent.sentinel)


def _address_of(pid: int) -> str:
    """The abstract socket name of the tracker that watches process *pid*."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Field 22 is the start time; the command name (field 2) may hold spaces.
            start_time = int(f.read().rsplit(b")", 1)[1].split()[19])
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except (OSError, IndexError, ValueError):
        # No /proc: a name nobody can derive; only the environment leads to it.
        return f"\0polyproc-shm-{pid}-{os.urandom(8).hex()}"
    return f"\0polyproc-shm-{namespace}-{pid}-{start_time}"


def _start_tracker(client: _Client, address: str, watched_fd: int) -> str | None:
    """Start a tracker listening at *address* that watches the pidfd *watched_fd*."""
    from .._os._spawn import spawn_executable
    from .._process._state import runtime

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        try:
            sock.bind(address)
        except OSError as exc:
            # A sibling is starting this very tracker: its socket already queues for it.
            return address if exc.errno == errno.EADDRINUSE else None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        fds = [str(sock.fileno()), str(watched_fd)]
        if os.path.isfile(__file__):
            argv = [runtime.executable, "-I", "-S", __file__, *fds]
        else:  # pragma: no cover - installed without sources
            code = "from polyproc._shared._shm_tracker import main; main()"
            argv = [runtime.executable, "-c", code, *fds]
        client.spawned = spawn_executable(argv, [sock.fileno(), watched_fd])
        return address
    except OSError:
        return None
    finally:
        sock.close()  # the tracker holds its own copy


# ---------------------------------------------------------------------------------------
# Tracker side: runs as ``python -I -S _shm_tracker.py SOCKET_FD WATCHED_PIDFD``.


def main(argv: list[str] | None = None) -> None:
    """Record segments until the watched process ends, then unlink what is left."""
    sock_fd, watched_fd = (int(arg) for arg in (argv or sys.argv)[1:3])
    # Ctrl-C, a hang-up or a SIGTERM to the whole group must not kill the tracker before
    # the application it cleans up after: it ends with the watched process.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    _detach_stdio()
    sock = socket.socket(fileno=sock_fd)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.setblocking(False)
    registry: dict[bytes, int] = {}
    senders: dict[int, None] = {}  # pids that registered something, oldest first
    poller = select.poll()
    poller.register(sock_fd, select.POLLIN)
    poller.register(watched_fd, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if sock_fd in ready:
            _drain(sock, registry, senders)
        if watched_fd in ready:
            break
    _linger(sock, registry, senders)
    _drain(sock, registry, senders)
    sock.close()
    removed = _unlink_all(registry)
    if removed:
        shown = ", ".join(os.fsdecode(name) for name in removed[:10])
        more = f" and {len(removed) - 10} more" if len(removed) > 10 else ""
        # The standard library's words, so that what looks for them finds them.
        sys.stderr.write(
            f"polyproc resource_tracker: There appear to be {len(removed)} leaked"
            f" shared_memory objects to clean up at shutdown (unlinked: {shown}{more})\n"
        )


def _detach_stdio() -> None:
    # Keep stderr for the report; let go of stdin and stdout (a pipe someone may read to
    # its end) and of the working directory.
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        os.chdir("/")
    except OSError:
        pass


def _drain(sock: socket.socket, registry: dict[bytes, int], senders: dict[int, None]) -> None:
    """Apply every datagram waiting on *sock*."""
    my_uid = os.getuid()
    while True:
        try:
            data, ancdata, flags, _ = sock.recvmsg(
                _MAX_MESSAGE + 1, socket.CMSG_SPACE(_CREDENTIALS.size)
            )
        except OSError:  # BlockingIOError: nothing more to read
            return
        pid, uid = _sender(ancdata)
        if uid != my_uid or flags & socket.MSG_TRUNC or len(data) > _MAX_MESSAGE:
            continue
        kind = data[:1]
        if kind == _REGISTER and len(data) > 1 + _INODE.size:
            name = data[1 + _INODE.size :]
            if _valid(name):
                registry[name] = _INODE.unpack_from(data, 1)[0]
                if pid not in senders and len(senders) < _MAX_WATCHED_SENDERS:
                    senders[pid] = None
        elif kind == _UNREGISTER:
            registry.pop(data[1:], None)


def _sender(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, uid, _gid = _CREDENTIALS.unpack_from(payload)
            return pid, uid
    return -1, -1  # no credentials: refused


def _valid(name: bytes) -> bool:
    """Whether *name* is a file directly in /dev/shm (see :func:`check_name`)."""
    if not 0 < len(name) <= MAX_NAME or name in (b".", b".."):
        return False
    return b"/" not in name and b"\0" not in name


def _linger(sock: socket.socket, registry: dict[bytes, int], senders: dict[int, None]) -> None:
    """Keep recording until the processes that registered segments are gone (bounded)."""
    deadline = time.monotonic() + _LINGER_S
    handles: dict[int, int] = {}
    for pid in senders:
        try:
            handles[os.pidfd_open(pid)] = pid
        except OSError:
            pass  # already gone (reaped)
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        for fd in handles:
            poller.register(fd, select.POLLIN)
        while handles:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for fd, _ in poller.poll(int(remaining * 1000) + 1):
                if fd == sock.fileno():
                    _drain(sock, registry, senders)
                elif fd in handles:
                    poller.unregister(fd)
                    del handles[fd]
                    os.close(fd)
    finally:
        for fd in handles:
            os.close(fd)


def _unlink_all(registry: dict[bytes, int]) -> list[bytes]:
    """Unlink each registered segment that is still the file registered; return them."""
    removed = []
    directory = os.fsencode(SHM_DIR)
    for name, inode in registry.items():
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if info.st_ino != inode or not stat.S_ISREG(info.st_mode):
                continue
            os.unlink(path)
        except OSError:
            continue
        removed.append(name)
    return removed


if __name__ == "__main__":
    main()
