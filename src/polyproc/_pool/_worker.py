"""The loop a pool worker runs: receive a batch, run it, send the results back.

Wire format on the worker's own connection (a duplex pipe):

* parent -> worker: ``send_bytes(HEADER(batch_id) + pickle((kind, func, items)))``;
  an empty message asks the worker to exit. The batch id travels outside the pickle so
  that a batch the worker cannot unpickle (a function it cannot import) still fails as
  itself.
* worker -> parent: ``send((DONE, batch_id, results))`` or
  ``send((FAILED, batch_id, results_before_the_failure, packed_exception))``;
  ``send((INIT_FAILED, 0, None, packed_exception))`` if the initializer raised.

A worker ignores SIGINT: Ctrl-C is the parent's to handle (it terminates the workers).
"""

from __future__ import annotations

import os
import signal
import struct

from .._wire import _pickling
from .._wire._remote_error import pack_exception as _pack

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["APPLY", "DONE", "FAILED", "HEADER", "INIT_FAILED", "MAP", "STARMAP", "worker_main"]

HEADER = struct.Struct("!Q")
# Results travel over the worker's own pipe: an exception (and its message) may be big.
_EXCEPTION_LIMIT_BYTES = 256 * 1024 * 1024


def pack_exception(exc: BaseException, where: str) -> bytes:
    """The worker's exception, packed whole (see _wire._remote_error)."""
    return _pack(exc, where, _EXCEPTION_LIMIT_BYTES)
APPLY, MAP, STARMAP = 0, 1, 2
DONE, FAILED, INIT_FAILED = 0, 1, 2


def worker_main(
    conn: Any,
    initializer: Callable[..., object] | None,
    initargs: tuple[Any, ...],
    maxtasks: int | None,
) -> None:
    """Run batches from *conn* until told to stop, the parent goes, or *maxtasks* are done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    where = f"pool worker (pid {os.getpid()})"
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:
            conn.send((INIT_FAILED, 0, None, pack_exception(exc, where)))
            return
    done = 0
    while maxtasks is None or done < maxtasks:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        (batch_id,) = HEADER.unpack_from(message)
        results: list[Any] = []
        try:
            kind, func, items = _pickling.loads(memoryview(message)[HEADER.size :])
            if kind == APPLY:
                args, kwargs = items
                results.append(func(*args, **kwargs))
            elif kind == STARMAP:
                for args in items:
                    results.append(func(*args))
            else:
                for item in items:
                    results.append(func(item))
        except BaseException as exc:
            reply: tuple[Any, ...] = (FAILED, batch_id, results, pack_exception(exc, where))
        else:
            reply = (DONE, batch_id, results)
        try:
            conn.send(reply)
        except Exception as exc:  # a result that cannot be pickled fails its task, clearly
            conn.send((FAILED, batch_id, [], pack_exception(exc, where)))
        done += 1
