"""ctypes objects in shared memory, as in :mod:`multiprocessing.sharedctypes`.

The memory comes from memfd segments the kernel frees with their last user: nothing is
left in /dev/shm, however the processes that used it end.
"""

from __future__ import annotations

from ._shared._sharedctypes import (
    Array,
    RawArray,
    RawValue,
    Synchronized,
    SynchronizedArray,
    SynchronizedBase,
    SynchronizedString,
    Value,
    copy,
    synchronized,
)

__all__ = [
    "Array",
    "RawArray",
    "RawValue",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedBase",
    "SynchronizedString",
    "Value",
    "copy",
    "synchronized",
]
