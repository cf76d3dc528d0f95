"""``SharedMemoryManager``: shared memory blocks whose lifetime a manager process owns.

Blocks are created by the client (so creating one costs no round trip for the data) and
their names are registered with the server, which unlinks every one of them when the
manager shuts down, however the processes that used them ended.
"""

from __future__ import annotations

from .._shared._shared_memory import ShareableList, SharedMemory
from ._manager import BaseManager
from ._protocol import call, result_of
from ._server import Server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["SharedMemoryManager", "SharedMemoryServer"]

TRACK_SEGMENT, RELEASE_SEGMENT, LIST_SEGMENTS = 100, 101, 102


class SharedMemoryServer(Server):
    """A manager server that also keeps the names of shared memory blocks, and unlinks
    them all when it stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_names: list[str] = []

    def _handle_other(self, op: int, name: Any, args: Any) -> tuple[str, Any]:
        with self._lock:
            if op == TRACK_SEGMENT:
                self.segment_names.append(str(name))
                return ("#RETURN", None)
            if op == RELEASE_SEGMENT:
                if name in self.segment_names:
                    self.segment_names.remove(name)
                return ("#RETURN", None)
            if op == LIST_SEGMENTS:
                return ("#RETURN", list(self.segment_names))
        return super()._handle_other(op, name, args)

    def serve_forever(self) -> None:
        """Serve until shut down, then unlink every tracked block."""
        try:
            super().serve_forever()
        finally:
            for name in self.segment_names:
                try:
                    segment = SharedMemory(name)
                except FileNotFoundError:
                    continue
                segment.close()
                segment.unlink()
            self.segment_names.clear()


class SharedMemoryManager(BaseManager):
    """A manager of shared memory blocks: ``SharedMemory(size)`` and
    ``ShareableList(sequence)`` create blocks that are unlinked at ``shutdown()``."""

    _Server = SharedMemoryServer

    def _track(self, op: int, name: str) -> Any:
        return result_of(call(self._address, self._authkey, (op, None, name, (), {})))

    def SharedMemory(self, size: int) -> SharedMemory:
        """A new shared memory block of *size* bytes, unlinked at shutdown."""
        block = SharedMemory(None, create=True, size=size)
        try:
            self._track(TRACK_SEGMENT, block.name)
        except BaseException:
            block.close()
            block.unlink()
            raise
        return block

    def ShareableList(self, sequence: Iterable[Any] | None) -> ShareableList:
        """A new ShareableList of *sequence*, unlinked at shutdown."""
        shareable = ShareableList(sequence)
        try:
            self._track(TRACK_SEGMENT, shareable.shm.name)
        except BaseException:
            shareable.shm.close()
            shareable.shm.unlink()
            raise
        return shareable
