"""polyproc.dummy: the API run by threads."""

from __future__ import annotations

from polyproc import dummy
from polyproc.dummy import connection
from tests import _workers
from tests._support import SHORT_TIMEOUT


def test_processes_are_threads():
    """A dummy Process runs in this process and reports exitcode 0 when done."""
    results: list = []
    p = dummy.Process(target=results.append, args=(1,))
    p.start()
    p.join(SHORT_TIMEOUT)
    assert [1] == results
    assert 0 == p.exitcode
    assert [] == dummy.active_children()


def test_pool_queue_and_pipe():
    """Pool is a ThreadPool; Queue and Pipe move objects between threads."""
    with dummy.Pool(2) as pool:
        assert [0, 1, 4] == pool.map(_workers.square, range(3))
    q = dummy.Queue()
    q.put("x")
    assert "x" == q.get(timeout=SHORT_TIMEOUT)
    a, b = dummy.Pipe()
    a.send(1)
    assert b.poll(SHORT_TIMEOUT) and 1 == b.recv()
    with connection.Listener() as listener:
        client = connection.Client(listener.address)
        server = listener.accept()
        client.send("hi")
        assert "hi" == server.recv()


def test_values_and_manager():
    """Value, Array, Namespace and Manager behave like their process counterparts."""
    v = dummy.Value("i", 3)
    v.value += 1
    assert 4 == v.value
    assert [1, 2] == list(dummy.Array("i", [1, 2]))
    ns = dummy.Namespace(a=1)
    assert "Namespace(a=1)" == repr(ns)
    manager = dummy.Manager()
    assert {} == manager.dict() and [] == manager.list()
