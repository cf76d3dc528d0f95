"""Connections between threads, as :mod:`multiprocessing.dummy.connection`."""

from __future__ import annotations

from queue import Queue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Client", "Connection", "Listener", "Pipe"]

families = [None]


class Listener:
    """Accepts connections from :func:`Client` in other threads of this process."""

    def __init__(self, address: Any = None, family: Any = None, backlog: int = 1) -> None:
        self._backlog_queue: Queue[Any] | None = Queue(backlog)

    def accept(self) -> Connection:
        """Wait for a Client and return the connection to it."""
        if self._backlog_queue is None:
            raise OSError("listener is closed")
        return Connection(*self._backlog_queue.get())

    def close(self) -> None:
        """Stop accepting."""
        self._backlog_queue = None

    @property
    def address(self) -> Any:
        """What Client connects to: the listener's queue."""
        return self._backlog_queue

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def Client(address: Any) -> Connection:
    """Connect to the :class:`Listener` whose ``address`` is given."""
    _in: Queue[Any] = Queue()
    _out: Queue[Any] = Queue()
    address.put((_out, _in))
    return Connection(_in, _out)


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Two connected ends, made of two queues."""
    a: Queue[Any] = Queue()
    b: Queue[Any] = Queue()
    return Connection(a, b), Connection(b, a)


class Connection:
    """One end of a thread-to-thread channel: ``send``/``recv``, ``poll``, ``close``."""

    def __init__(self, _in: Queue[Any], _out: Queue[Any]) -> None:
        self._out = _out
        self._in = _in
        self.send = self.send_bytes = _out.put
        self.recv = self.recv_bytes = _in.get

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether something is waiting, waiting up to *timeout* seconds for it."""
        if self._in.qsize() > 0:
            return True
        if timeout is not None and timeout <= 0.0:
            return False
        with self._in.not_empty:
            self._in.not_empty.wait(timeout)
        return self._in.qsize() > 0

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
