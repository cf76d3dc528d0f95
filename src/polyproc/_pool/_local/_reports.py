"""Reports from the local workers: from frames to deliveries.

A worker sends frames: reports of task outcomes, forwarded log records, the notice that
it retires, or that the initializer failed (see ``_worker``). Here they are unpickled
(:func:`load_messages`: a message that does not unpickle is dropped, not fatal), and a
task's outcome is decoded (:func:`decode_outcome`): a result or an exception that pickled
in the worker but does not unpickle here fails that task alone with a SerializationError,
whose cause keeps its traceback as text (:func:`detached`).
"""

from __future__ import annotations

from ..._wire import _pickling
from ..._wire._remote_error import unpack_exception
from ...exceptions import SerializationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .._contract import Batch

__all__ = [
    "UNREADABLE",
    "decode_outcome",
    "detached",
    "emit_log_record",
    "load_apart",
    "load_messages",
    "unpack_error",
]


def decode_outcome(
    batch: Batch, first: int, sent_ok: bool, sent_values: Any, packed: Any
) -> tuple[bool, list[Any], BaseException | None]:
    """The outcome of the task of *batch* at item *first* as reported: whether it
    succeeded, its values, and the exception it raised (or why its result does not
    unpickle here)."""
    ok, values = sent_ok, sent_values
    error: BaseException | None = None
    if values is None:  # pickled apart: it may not unpickle here (see _worker)
        values, error = load_apart(packed, batch.describe_task(first))
        ok = error is None
    elif not ok:
        error = unpack_error(packed, batch.describe_task(first))
    return ok, values, error


#: The tag of a message that did not unpickle (a log record with an odd attribute).
UNREADABLE: Any = object()


def load_messages(frames: list[tuple[Any, list[Any]]]) -> list[tuple[Any, ...]]:
    """Unpickle a worker's frames. Reports always unpickle (results that may not are
    pickled apart, see _worker); anything else that does not is dropped, not fatal."""
    messages = []
    for payload, buffers in frames:
        try:
            messages.append(_pickling.loads(payload, buffers))
        except Exception as exc:
            messages.append((UNREADABLE, repr(exc)))
    return messages


def load_apart(packed: tuple[str, Any, list[Any]], task: str) -> tuple[Any, Any]:
    """The values of a result pickled apart, and None; or [] and the SerializationError
    saying why they did not unpickle."""
    type_names, payload, buffers = packed
    try:
        return _pickling.loads(payload, buffers), None
    except Exception as exc:
        error = SerializationError(
            f"the result of {task} (of type {type_names}) was pickled by the worker but "
            f"could not be unpickled in the parent: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = detached(exc)
        return [], error


def unpack_error(failure: tuple[str, bytes], task: str) -> BaseException:
    """The exception a task raised (*failure*: its type's name and the packed exception),
    or a SerializationError naming that type if it does not unpickle here."""
    type_name, packed = failure
    try:
        return unpack_exception(packed)
    except Exception as exc:
        error = SerializationError(
            f"{task} raised {type_name}, which was pickled by the worker but could not be "
            f"unpickled in the parent: {type(exc).__name__}: {exc}"
        )
        error.__cause__ = detached(exc)
        return error


def detached(exc: BaseException) -> BaseException:
    """*exc*, raised here while unpickling, with its traceback as a note instead of frames:
    the frames would keep the manager's locals (workers, deliveries, results) alive
    for as long as the caller keeps the error, and make reference cycles."""
    import traceback

    text = "".join(traceback.format_tb(exc.__traceback__))
    exc.add_note(f"raised while unpickling, at:\n{text}".rstrip())
    return exc.with_traceback(None)


def emit_log_record(attributes: dict[str, Any]) -> None:
    """Hand a record forwarded by a worker to this process's handlers."""
    import logging

    record = logging.makeLogRecord(attributes)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
