"""Shared memory for direct access across processes, as in
:mod:`multiprocessing.shared_memory`.

``SharedMemory`` is a block of memory named in /dev/shm that any process can attach by
name; ``ShareableList`` keeps a fixed-length list of ints, floats, bools, strs, bytes and
Nones in one. Beyond the standard library: whatever block the application created and did
not unlink is removed when its main process ends, even if some process of it (the main one
included) was killed with SIGKILL.
"""

from __future__ import annotations

from ._shared._shared_memory import ShareableList, SharedMemory

__all__ = ["ShareableList", "SharedMemory"]
