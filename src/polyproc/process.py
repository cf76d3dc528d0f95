"""Process objects, as in :mod:`multiprocessing.process`."""

from __future__ import annotations

from ._process._process import (
    AuthenticationString,
    BaseProcess,
    active_children,
    current_process,
    parent_process,
)

# What test suites written for the stdlib reach for: reap finished children, and the
# processes started and still referenced.
from ._process._process import cleanup as _cleanup  # noqa: F401
from ._process._process import dangling as _dangling  # noqa: F401

__all__ = [
    "AuthenticationString",
    "BaseProcess",
    "active_children",
    "current_process",
    "parent_process",
]
