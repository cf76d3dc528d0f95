"""The fork server process: preload once, then fork a child per request.

Started by :func:`._forkserver.start_server` as
``python -c "...; main()" LISTENER_FD CREATOR_PIDFD PREP_FD``. Single-threaded: one
``poll`` over the listening socket, a self-pipe woken by SIGCHLD, and the creator's
pidfd. See :mod:`._forkserver` for the protocol.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import socket
import struct
import sys
import traceback

from .._os._wait import wait_readable
from ._child import run_child, write_report
from ._forkserver import LENGTH, PID, STATUS
from ._launch import decode_payload
from ._prepare import import_main_path
from ._state import runtime

# typing is not imported at run time (see _launch).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]

_MAX_FDS = 256
_REQUEST_TIMEOUT_S = 10.0


def main() -> None:
    """Serve start requests until the creating process ends."""
    listener_fd, creator_handle, prep_fd = (int(arg) for arg in sys.argv[1:4])
    with open(prep_fd, "rb", closefd=True) as pipe:
        deferred_main = _preload(pickle.load(pipe))
    # Ctrl-C reaches the whole process group: the server must outlive it like its
    # creator's children do, and go away only with its creator.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    listener = socket.socket(fileno=listener_fd)
    children: dict[int, socket.socket] = {}
    my_uid = os.getuid()
    while True:
        ready = wait_readable([listener_fd, wake_r, creator_handle], None)
        if creator_handle in ready:
            break
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 4096):
                    pass
            _reap(children)
        if listener_fd in ready:
            conn, _ = listener.accept()
            uid = _peer_uid(conn)
            if uid != my_uid:
                conn.close()
                continue
            try:
                request = _read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                _become_child(
                    conn,
                    request,
                    [listener, *children.values()],
                    [wake_r, wake_w, creator_handle],
                    deferred_main,
                )
            for fd in request[1]:
                os.close(fd)
            try:
                conn.sendall(PID.pack(pid))
            except OSError:
                pass
            children[pid] = conn
        _reap(children)


def _preload(prep: dict[str, Any]) -> str | None:
    """Become like the creator and import the preload modules.

    Returns the main module's path if the children must import it themselves: when
    ``__main__`` is not among the preloaded modules, or when importing it failed (the
    error, a missing ``__main__`` guard say, then shows up in each child, where the
    standard library shows it, instead of killing the server).
    """
    sys.path[:] = prep["sys_path"]
    sys.argv[:] = prep["sys_argv"]
    with contextlib.suppress(OSError):
        os.chdir(prep["dir"])
    for name in prep["preload"]:
        if name != "__main__":
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    main_path: str | None = prep.get("main_path")
    if main_path and "__main__" in prep["preload"]:
        try:
            _import_main_guarded(main_path)
        except BaseException:
            return main_path
        return None
    # Not preloaded: each child imports the main module itself, as under spawn.
    return main_path


def _import_main_guarded(main_path: str) -> None:
    runtime.bootstrapping = True
    try:
        import_main_path(main_path)
    finally:
        runtime.bootstrapping = False


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _read_request(conn: socket.socket) -> tuple[bytes, list[int]]:
    conn.settimeout(_REQUEST_TIMEOUT_S)
    header, fds, _flags, _addr = socket.recv_fds(conn, LENGTH.size, _MAX_FDS)
    try:
        while len(header) < LENGTH.size:
            more = conn.recv(LENGTH.size - len(header))
            if not more:
                raise ValueError("truncated request")
            header += more
        (size,) = LENGTH.unpack(header)
        body = bytearray()
        while len(body) < size:
            more = conn.recv(min(size - len(body), 1 << 20))
            if not more:
                raise ValueError("truncated request")
            body += more
        if len(fds) < 2:
            raise ValueError("request without its descriptors")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.settimeout(None)
    return bytes(body), fds


def _become_child(
    conn: socket.socket,
    request: tuple[bytes, list[int]],
    sockets: list[socket.socket],
    fds: list[int],
    deferred_main: str | None,
) -> None:
    """In the forked child: drop the server's state and run the requested process."""
    exitcode = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sock in (conn, *sockets):
            sock.close()
        for fd in fds:
            os.close(fd)
        body, (report_fd, parent_handle, *transfer) = request
        try:
            if deferred_main is not None:
                _import_main_guarded(deferred_main)
            process = decode_payload(body, transfer, with_preparation=False)
        except BaseException as exc:
            traceback.print_exc()
            write_report(report_fd, exc, "being started by the fork server")
            raise
        finally:
            for fd in transfer:
                os.close(fd)
        exitcode = run_child(process, report_fd=report_fd, parent_handle=parent_handle)
    finally:
        os._exit(exitcode)


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
            conn.close()
