"""Every exception polyproc raises, in one tree.

Each class also subclasses what code written for :mod:`multiprocessing` catches today, so
switching to polyproc never turns a handled error into an unhandled one::

    ProcessError                      base of everything polyproc raises on purpose
    ├── BufferTooShort                Connection.recv_bytes_into: the buffer is too small
    ├── AuthenticationError           an authkey handshake failed (wrong key, garbage, timeout)
    ├── TimeoutError                  also the builtin TimeoutError (multiprocessing's is not)
    ├── SerializationError            also pickle.PicklingError and TypeError: an object
    │                                 could not be pickled; the message names it and the call
    ├── RemoteError                   an exception raised in another process that could not
    │                                 itself be sent back; carries the type name and text
    ├── WorkerLostError               a pool worker died (signal, exit, OOM killer) while it
    │                                 held a task; names the task, the signal and the cause
    └── InitializerError              a pool's initializer raised in a worker; the pool fails
                                      its tasks with this instead of restarting forever

    AbandonedLockWarning              a RuntimeWarning: a lock was taken over from a process
                                      that died holding it

    RemoteTraceback                   not raised: attached as ``__cause__`` of an exception
                                      that crossed a process boundary, holding the traceback
                                      as the other process printed it

Exceptions cross process boundaries through pickle, so every class here keeps its
constructor arguments in ``args`` (or defines ``__reduce__``); a test round-trips each one.
"""

from __future__ import annotations

import builtins
import pickle

__all__ = [
    "AbandonedLockWarning",
    "AuthenticationError",
    "BufferTooShort",
    "InitializerError",
    "ProcessError",
    "RemoteError",
    "RemoteTraceback",
    "SerializationError",
    "TimeoutError",
    "WorkerLostError",
]


class ProcessError(Exception):
    """Base class of the errors polyproc raises on purpose."""


class BufferTooShort(ProcessError):
    """``Connection.recv_bytes_into`` was given a buffer smaller than the message.

    ``args[0]`` is the whole message as bytes, as in :mod:`multiprocessing`, so nothing
    is lost.
    """


class AuthenticationError(ProcessError):
    """The authkey handshake of a connection failed.

    Raised on both sides when the keys differ, and on the accepting side when the peer
    sends something that is not a handshake, sends too much, or stays silent past the
    handshake timeout.
    """


class TimeoutError(ProcessError, builtins.TimeoutError):
    """A blocking call ran out of time.

    Unlike ``multiprocessing.TimeoutError``, this is also the builtin ``TimeoutError``, so
    ``except TimeoutError`` catches it whichever name is in scope.
    """


class SerializationError(ProcessError, pickle.PicklingError, TypeError):
    """An object could not be pickled to be sent to another process.

    The message names the object and the call that tried to send it. It is also a
    ``pickle.PicklingError`` and a ``TypeError``, the two errors the standard library lets
    escape in the same situation.
    """


class RemoteError(ProcessError):
    """An exception raised in another process that could not be sent back as itself.

    ``args`` is ``(type_name, message)``; the remote traceback, when known, is the
    ``__cause__``.
    """

    def __str__(self) -> str:
        if len(self.args) == 2:
            return f"{self.args[0]}: {self.args[1]}"
        return super().__str__()


class WorkerLostError(ProcessError):
    """A pool worker ended while it held a task: the task's result is lost.

    The message names the task, the worker's pid, how it ended (the signal and its likely
    cause, such as the OOM killer for SIGKILL) and what the pool did (it replaced the
    worker). Only the tasks that worker held fail; the pool goes on.
    """


class InitializerError(ProcessError):
    """The pool's *initializer* raised in a worker; the remote exception is the cause.

    Every pending and later task of that pool fails with this error: a worker that cannot
    initialise would fail again on every restart (the standard library's pool restarts it
    forever and hangs).
    """


class RemoteTraceback(Exception):
    """The traceback of an exception as printed in the process that raised it.

    polyproc sets it as the ``__cause__`` of an exception re-raised in another process, so
    the usual traceback printout shows where the error really happened.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AbandonedLockWarning(RuntimeWarning):
    """A lock was acquired by taking it over from a process that died holding it.

    The acquire succeeds, so no process waits forever on a dead holder, but the state the
    lock protects may be half-updated. Turn the warning into an error
    (``warnings.simplefilter("error", AbandonedLockWarning)``) to make such an acquire
    raise instead; the lock is then released again.
    """
