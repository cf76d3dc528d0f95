"""The fork server, as in :mod:`multiprocessing.forkserver`.

A stdlib-shaped face over :mod:`polyproc._process._forkserver`: one server per process,
started on first need (a fresh interpreter that imports the preload modules, then forks a
child per request). The server exits with the process that started it.

polyproc's protocol differs from the standard library's: a start request carries the
pickled process object and its descriptors in one message, and the connection itself is
the child's sentinel. Hence :func:`connect_to_new_process`, which hands out the standard
library's pipe pair, cannot apply, and :func:`get_inherited_fds` is ``None``: descriptors
reach a child inside the objects that hold them.
"""

from __future__ import annotations

import signal

from ._os._wait import wait_readable
from ._process._forkserver import start_server
from ._process._forkserver_main import _MAX_FDS
from ._process._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

__all__ = [
    "MAXFDS_TO_SEND",
    "ForkServer",
    "connect_to_new_process",
    "ensure_running",
    "get_inherited_fds",
    "set_forkserver_preload",
]

# The most descriptors one start request may carry (the server's limit).
MAXFDS_TO_SEND = _MAX_FDS


class ForkServer:
    """This process's fork server: start it, configure its preload, stop it.

    The state lives on polyproc's runtime, so every instance (and the ``forkserver``
    start method itself) shares the one server.
    """

    def ensure_running(self) -> None:
        """Start the fork server unless it is running; never starts a second one.

        Raises:
            OSError: the server cannot be started.
        """
        with runtime.lock:
            server = runtime.forkserver
            if server is not None and server.is_alive():
                return
            if server is not None:
                server.retire()
                runtime.forkserver = None
            runtime.forkserver = start_server()

    def get_inherited_fds(self) -> list[int] | None:
        """``None``: a polyproc child receives descriptors inside the objects that hold them.

        (The standard library returns the raw list a forkserver child inherited.)
        """
        return None

    def connect_to_new_process(self, fds: Sequence[int]) -> NoReturn:
        """Not applicable to polyproc's protocol; see the module docstring.

        Raises:
            NotImplementedError: always. Start a process with the ``forkserver`` context
                (or :class:`polyproc.popen_forkserver.Popen`) instead.
        """
        raise NotImplementedError(
            "polyproc's fork server takes the process object and its descriptors in one "
            "request; use get_context('forkserver').Process(...).start() or "
            "polyproc.popen_forkserver.Popen(process) instead of connect_to_new_process()"
        )

    def set_forkserver_preload(self, modules_names: list[str]) -> None:
        """Modules the next fork server imports before forking children.

        Raises:
            TypeError: not a list of strings.
        """
        if not all(type(name) is str for name in modules_names):
            raise TypeError("module_names must be a list of strings")
        runtime.forkserver_preload = list(modules_names)

    @property
    def _forkserver_pid(self) -> int | None:
        server = runtime.forkserver
        return server.pid if server is not None else None

    @property
    def _forkserver_address(self) -> str | None:
        server = runtime.forkserver
        return server.address if server is not None else None

    @property
    def _preload_modules(self) -> list[str]:
        return runtime.forkserver_preload

    def _stop(self) -> None:
        # Stop the server and wait for its end (tests use it, as the stdlib's do). Its
        # running children are not affected, but lose their exit-status reports.
        with runtime.lock:
            server, runtime.forkserver = runtime.forkserver, None
            if server is None:
                return
            try:
                signal.pidfd_send_signal(server.handle, signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_readable([server.handle], None)
            server.retire()


_forkserver = ForkServer()

ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
