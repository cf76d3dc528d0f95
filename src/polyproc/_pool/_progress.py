"""Progress bars for map-like calls: ``progress=True`` or a tqdm-compatible object.

``progress=True`` uses ``tqdm.auto`` when tqdm is installed (it draws in terminals and in
notebooks alike) and otherwise a small text bar on stderr with the rate and the time left.
Any object with ``update(n)`` and ``close()`` (a tqdm bar of your own, say) works too.
Bars are updated once per delivered piece of results, in the pool's manager thread, and the text bar
redraws at most ten times a second: the cost stays small on tiny tasks.
"""

from __future__ import annotations

import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = ["ProgressTracker", "TextBar"]

_REDRAW_S = 0.1
_WIDTH = 30


class TextBar:
    """A one-line progress bar: ``[#####.....] 120/400  35.2/s  ETA 8s``."""

    def __init__(self, total: int | None, stream: TextIO | None = None, desc: str = "") -> None:
        self.total = total
        self.n = 0
        self._stream = stream if stream is not None else sys.stderr
        self._desc = f"{desc}: " if desc else ""
        self._start = time.monotonic()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        """Count *n* more items; redraw if it has been a while."""
        self.n += n
        now = time.monotonic()
        if now - self._last_draw >= _REDRAW_S:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        if self.total:
            filled = int(_WIDTH * min(self.n, self.total) / self.total)
            bar = "#" * filled + "." * (_WIDTH - filled)
            left = (self.total - self.n) / rate if rate > 0 else float("inf")
            eta = f"ETA {left:.0f}s" if left != float("inf") else "ETA ?"
            text = f"\r{self._desc}[{bar}] {self.n}/{self.total}  {rate:.1f}/s  {eta}"
        else:
            text = f"\r{self._desc}{self.n} done  {rate:.1f}/s  {elapsed:.0f}s"
        self._stream.write(text)
        self._stream.flush()


def _make_bar(progress: Any, total: int | None) -> Any:
    if progress is True:
        try:
            from tqdm.auto import tqdm  # optional: only if the user has it
        except ImportError:
            return TextBar(total)
        return tqdm(total=total)
    if not (hasattr(progress, "update") and hasattr(progress, "close")):
        raise TypeError(
            f"progress must be True, False or an object with update() and close(), "
            f"not {progress!r}"
        )
    if total is not None and getattr(progress, "total", None) is None:
        try:
            progress.total = total
        except AttributeError:
            pass
    return progress


class ProgressTracker:
    """Feeds a bar as items complete and closes it when the last one has."""

    def __init__(self, progress: Any, total_items: int | None) -> None:
        self._bar = _make_bar(progress, total_items)
        self._lock = threading.Lock()
        self._done = 0
        self._total: int | None = None
        self._closed = False

    def done(self, items: int) -> None:
        """*items* more calls finished (successfully or not, or skipped after a failure)."""
        with self._lock:
            self._bar.update(items)
            self._done += items
            self._maybe_close()

    def set_total(self, items: int) -> None:
        """The input is exhausted: *items* items in all."""
        with self._lock:
            self._total = items
            self._maybe_close()

    def _maybe_close(self) -> None:
        total = self._total
        if not self._closed and total is not None and self._done >= total:
            self._closed = True
            self._bar.close()
