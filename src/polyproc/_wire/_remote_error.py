"""The wire form of an exception raised in another process.

The sender calls :func:`pack_exception`; the receiver calls :func:`unpack_exception` and
gets the original exception back, with the sender's formatted traceback attached as a
:class:`~polyproc.exceptions.RemoteTraceback` ``__cause__``. An exception that does not
survive a pickle round trip (a custom ``__init__``, an unpicklable attribute) arrives as
a :class:`~polyproc.exceptions.RemoteError` carrying its type name and message instead:
never as a hang or a lost error.
"""

from __future__ import annotations

import pickle

from ..exceptions import RemoteError, RemoteTraceback

__all__ = ["format_remote", "pack_exception", "unpack_exception"]

# Keep reports small enough to fit a pipe buffer without blocking the sender.
MAX_REPORT_BYTES = 60_000


def format_remote(exc: BaseException, where: str) -> str:
    """The traceback text of *exc*, framed to say it happened in *where*."""
    import traceback  # only the error path pays for it

    body = "".join(traceback.format_exception(exc))
    return f'\n"""\nTraceback in {where}:\n{body}"""'


def pack_exception(exc: BaseException, where: str, limit: int = MAX_REPORT_BYTES) -> bytes:
    """Pickle *exc* with its traceback text, falling back to a :class:`RemoteError`.

    *limit* bounds the result (a process's report must fit a pipe buffer); a pool's
    result pipe has no such bound and passes a large one.
    """
    text = format_remote(exc, where)
    if len(text) > limit // 2:
        text = text[: limit // 4] + "\n[... traceback truncated ...]\n" + text[-limit // 4 :]
    try:
        data = pickle.dumps((exc, text), pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)  # an exception that cannot be rebuilt must not travel as itself
    except Exception:
        data = b""
    if not data or len(data) > limit:
        message = str(exc)
        if len(message) > limit // 4:
            message = message[: limit // 4] + "..."
        substitute = RemoteError(type(exc).__qualname__, message)
        data = pickle.dumps((substitute, text), pickle.HIGHEST_PROTOCOL)
    return data


def unpack_exception(data: bytes | bytearray | memoryview) -> BaseException:
    """Rebuild an exception packed by :func:`pack_exception`, remote traceback attached."""
    exc, text = pickle.loads(data)
    exc.__cause__ = RemoteTraceback(text)
    return exc  # type: ignore[no-any-return]
