"""The exception tree: compatible with what callers catch, and picklable."""

from __future__ import annotations

import builtins
import inspect
import pickle

import pytest

import polyproc
from polyproc import exceptions

ALL_EXCEPTIONS = [
    obj
    for obj in vars(exceptions).values()
    if inspect.isclass(obj)
    and issubclass(obj, BaseException)
    and obj.__module__ == exceptions.__name__
]


@pytest.mark.parametrize("cls", ALL_EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_exception_survives_pickle(cls):
    """Exceptions cross processes: each round-trips through pickle with its message."""
    exc = cls("type", "message") if cls is exceptions.RemoteError else cls("message")
    again = pickle.loads(pickle.dumps(exc))
    assert type(exc) is type(again)
    assert str(exc) == str(again)


def test_timeout_error_is_the_builtin():
    """polyproc.TimeoutError is also builtins.TimeoutError (multiprocessing's is not)."""
    assert issubclass(polyproc.TimeoutError, builtins.TimeoutError)
    assert issubclass(polyproc.TimeoutError, polyproc.ProcessError)


def test_errors_are_reexported_at_top_level():
    """The standard names are available as polyproc.X and on every context."""
    for name in ("ProcessError", "BufferTooShort", "AuthenticationError", "TimeoutError"):
        assert getattr(polyproc, name) is getattr(exceptions, name)
        assert getattr(polyproc.get_context("spawn"), name) is getattr(exceptions, name)


def test_tree_is_documented():
    """The module docstring draws every class."""
    for cls in ALL_EXCEPTIONS:
        assert cls.__name__ in exceptions.__doc__
