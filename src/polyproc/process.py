"""Process objects, as in :mod:`multiprocessing.process`."""

from __future__ import annotations

from ._process._process import (
    AuthenticationString,
    BaseProcess,
    active_children,
    current_process,
    parent_process,
)

__all__ = [
    "AuthenticationString",
    "BaseProcess",
    "active_children",
    "current_process",
    "parent_process",
]
