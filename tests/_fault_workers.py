"""Functions the fault tests run in pool workers (module level, so that spawn and the fork
server find them by reference)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: The environment variable naming the test process: objects refuse to unpickle there.
PARENT_PID_VARIABLE = "POLYPROC_FAULT_TEST_PARENT"


def square(x: int) -> int:
    """x squared."""
    return x * x


def block_forever(fifo: str) -> None:
    """Say so through the named pipe *fifo*, then never return."""
    with open(fifo, "w") as pipe:
        pipe.write("started\n")
    threading.Event().wait()


def _refuse_to_load(where: str) -> None:
    raise RuntimeError(f"this {where} refuses to be unpickled")


class Unloadable:
    """Pickles fine anywhere; unpickling it raises RuntimeError, anywhere."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _refuse_to_load, ("result",)


def unloadable_at(bad: int, x: int) -> Any:
    """x squared, except an Unloadable for x == *bad*."""
    return Unloadable() if x == bad else x * x


def return_unloadable() -> Unloadable:
    """An Unloadable."""
    return Unloadable()


def _rebuild_error(message: str) -> ParentRefusingError:
    if os.environ.get(PARENT_PID_VARIABLE) == str(os.getpid()):
        raise RuntimeError("this exception refuses to be unpickled in the test process")
    return ParentRefusingError(message)


class ParentRefusingError(Exception):
    """Unpickles in a worker (the check there passes) but not in the test process."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _rebuild_error, (str(self.args[0]),)


def raise_parent_refusing() -> None:
    """Raise a ParentRefusingError."""
    raise ParentRefusingError("raised in a worker")


def exit_at_once() -> None:
    """An initializer that leaves the process with os._exit(3)."""
    os._exit(3)


def kill_myself() -> None:
    """An initializer that SIGKILLs its own process (a worker killed while starting)."""
    os.kill(os.getpid(), signal.SIGKILL)
