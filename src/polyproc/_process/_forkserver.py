"""``forkserver``: children forked from a small, clean server process.

The first ``start()`` under this method spawns the server (a fresh interpreter that
imports the preload modules, ``__main__`` included by default) and keeps a handle on it.
Each start then connects to the server's socket and sends one request::

    8-byte payload length, with descriptors attached (SCM_RIGHTS):
        report pipe (write end), this process's pidfd, descriptors the payload refers to
    payload: the pickled process object

The server forks; the child rebuilds the process and runs it, watching the requesting
process (not the server) so it never outlives its real parent. The server answers with
the child's pid (8 bytes), then, when it has reaped the child, its exit code (4 bytes):
the connection is the child's sentinel. The socket lives in Linux's abstract namespace
(nothing to clean up on disk) and the server serves only peers of its own user id.
The server exits when the process that started it ends.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import sys
import threading

from .._os._pipes import read_available
from .._os._procs import reap
from .._os._spawn import interpreter_flags, spawn_executable
from .._os._wait import wait_readable
from .._wire import _pickling
from ..exceptions import ProcessError
from ._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["PID", "STATUS", "ForkServerChild", "ForkServerLauncher", "connect_request"]

PID = struct.Struct("!q")
STATUS = struct.Struct("!i")
LENGTH = struct.Struct("!Q")

SERVER_ENTRY = "from polyproc._process._forkserver_main import main; main()"


class _Server:
    """The client's record of a running fork server."""

    def __init__(self, pid: int, address: str) -> None:
        self.pid = pid
        self.address = address
        self.handle = os.pidfd_open(pid)

    def is_alive(self) -> bool:
        return not wait_readable([self.handle], 0)

    def retire(self) -> None:
        reap(self.pid, block=False)
        os.close(self.handle)


class ForkServerChild:
    """A child of the fork server: status by socket, signals by pidfd."""

    def __init__(self, pid: int, conn: socket.socket, report_fd: int) -> None:
        self.pid = pid
        self._conn = conn
        self.sentinel = conn.fileno()
        self._report_fd: int | None = report_fd
        self._returncode: int | None = None
        self._lock = threading.Lock()
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None

    def poll(self) -> int | None:
        if self._returncode is None and wait_readable([self.sentinel], 0):
            with self._lock:
                if self._returncode is None:
                    data = _recv_exact(self._conn, STATUS.size)
                    self._returncode = STATUS.unpack(data)[0] if data else 255
        return self._returncode

    def wait(self, timeout: float | None) -> int | None:
        if self._returncode is None and not wait_readable([self.sentinel], timeout):
            return None
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None and self.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def read_report(self) -> bytes | None:
        return read_available(self._report_fd) or None if self._report_fd is not None else None

    def close(self, _close: Callable[[int], None] = os.close) -> None:
        # os.close bound at definition: __del__ may run at interpreter exit, after the
        # os module's globals were cleared.
        self._conn.close()
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            _close(pidfd)
        if self._report_fd is not None:
            _close(self._report_fd)
            self._report_fd = None

    def __del__(self) -> None:
        # A Process dropped without close(): its descriptors go with it.
        if getattr(self, "_pidfd", None) is not None or getattr(self, "_report_fd", None):
            self.close()


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    """Read *size* bytes; fewer (possibly none) only if the peer closed."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


class ForkServerLauncher:
    """``forkserver``: ask the fork server for a child; see the module docstring."""

    name = "forkserver"

    def launch(self, process: Any) -> ForkServerChild:
        body, fds = _pickling.dumps_for_child(process, context=f"{type(process).__name__}.start")
        report_r, report_w = os.pipe()
        try:
            conn = self._connect()
            try:
                pid = connect_request(conn, body, [report_w, runtime.self_handle(), *fds])
            except BaseException:
                conn.close()
                raise
        except BaseException:
            os.close(report_r)
            raise
        finally:
            os.close(report_w)
        return ForkServerChild(pid, conn, report_r)

    def _connect(self) -> socket.socket:
        with runtime.lock:
            for _attempt in range(2):
                server = runtime.forkserver
                if server is None or not server.is_alive():
                    if server is not None:
                        server.retire()
                    server = runtime.forkserver = start_server()
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.settimeout(None)  # whatever socket.setdefaulttimeout() says
                try:
                    conn.connect(server.address)
                    return conn
                except OSError:
                    conn.close()
                    server.retire()
                    runtime.forkserver = None
        raise ProcessError("could not reach the fork server")


def connect_request(conn: socket.socket, body: bytes, fds: list[int]) -> int:
    """Send one start request on *conn*; return the pid of the forked child.

    Raises:
        ProcessError: the server closed the connection instead of answering (it died, or
            failed to import the main module: its error output says why).
    """
    socket.send_fds(conn, [LENGTH.pack(len(body))], fds)
    conn.sendall(body)
    answer = _recv_exact(conn, PID.size)
    if len(answer) < PID.size:
        raise ProcessError("the fork server closed the connection instead of starting a child")
    return int(PID.unpack(answer)[0])


def start_server() -> _Server:
    """Spawn a fork server for this process and return its record."""
    address = f"\0polyproc-forkserver-{os.getpid()}-{os.urandom(8).hex()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.settimeout(None)  # whatever socket.setdefaulttimeout() says
    try:
        listener.bind(address)
        listener.listen(128)
        payload_r, payload_w = os.pipe()
        argv = [
            runtime.executable,
            *interpreter_flags(),
            "-c",
            SERVER_ENTRY,
            str(listener.fileno()),
            str(runtime.self_handle()),
            str(payload_r),
        ]
        try:
            pid = spawn_executable(argv, [listener.fileno(), runtime.self_handle(), payload_r])
        finally:
            os.close(payload_r)
        with open(payload_w, "wb", closefd=True) as pipe:
            pipe.write(pickle.dumps(_server_preparation(), _pickling.PROTOCOL))
    finally:
        listener.close()
    return _Server(pid, address)


def _server_preparation() -> dict[str, Any]:
    main = sys.modules.get("__main__")
    data: dict[str, Any] = {
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "dir": os.getcwd(),
        "preload": list(runtime.forkserver_preload),
    }
    if _pickling.main_is_importable():
        data["main_path"] = os.path.abspath(getattr(main, "__file__", ""))
    return data
