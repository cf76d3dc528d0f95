"""Start a process by ``fork``, as in :mod:`multiprocessing.popen_fork`.

:class:`Popen` is the handle the standard library's ``Process`` keeps on its child; here
it is a thin public shape over polyproc's launcher of the same start method (the one
``Process.start()`` uses), so the child behaves exactly as one started by ``start()``.
The spawn and fork-server variants subclass it.
"""

from __future__ import annotations

import os
import signal

from ._process._process import BaseProcess
from ._process._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Popen"]


class Popen:
    """Start *process_obj* (a polyproc process object) with this class's start method.

    The child runs ``process_obj.run()`` with the usual exit-code rules. The process
    object itself is not marked as started: this handle is the parent's grip on the child.

    Raises:
        RuntimeError: called while a spawned child imports its main module (a script
            without the ``if __name__ == '__main__':`` guard).
        SerializationError: (spawn, forkserver) the process object cannot be pickled.
        OSError: the child cannot be created.
    """

    method = "fork"

    def __init__(self, process_obj: BaseProcess) -> None:
        if runtime.bootstrapping:
            from ._process._process import _BOOTSTRAP_ERROR

            raise RuntimeError(_BOOTSTRAP_ERROR)
        self.returncode: int | None = None
        self.finalizer = None
        process_obj._before_launch(runtime.start_method or self.method)
        self._handle: Any = self._launch(process_obj)
        self.pid: int = self._handle.pid
        self.sentinel: int = self._handle.sentinel

    def _launch(self, process_obj: BaseProcess) -> Any:
        return runtime.launchers[self.method].launch(process_obj)

    def duplicate_for_child(self, fd: int) -> int:
        """The descriptor number the child will see for *fd*: the same, after a fork."""
        return fd

    def poll(self, flag: int = os.WNOHANG) -> int | None:
        """The exit code (negative: killed by that signal), or ``None`` while it runs.

        With *flag* ``os.WNOHANG`` (the default) never blocks; with ``0`` waits for the end.
        """
        if self.returncode is None:
            if flag & os.WNOHANG:
                self.returncode = self._handle.poll()
            else:
                self.returncode = self._handle.wait(None)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to *timeout* seconds (forever if ``None``); the exit code or ``None``."""
        if self.returncode is None:
            self.returncode = self._handle.wait(timeout)
        return self.returncode

    def _send_signal(self, signum: int) -> None:
        if self.returncode is None:
            self._handle.send_signal(signum)

    def terminate(self) -> None:
        """Send SIGTERM to the child unless it has ended."""
        self._send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the child unless it has ended."""
        self._send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the descriptors (the sentinel among them); idempotent."""
        self._handle.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} method={self.method!r} pid={self.pid} " \
               f"returncode={self.returncode}>"
