"""Managers: the seed's example, custom and remote managers, and the promises made
beyond the standard library (a dead server fails fast, a dead client releases its
references, a wrong key is refused while everyone else is served)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import polyproc
from polyproc.exceptions import AuthenticationError
from polyproc.managers import BaseManager, ManagerGoneError, SyncManager
from tests import _workers
from tests._support import SHORT_TIMEOUT, wait_until


@pytest.fixture
def manager(ctx):
    """A started SyncManager whose server uses the test's start method."""
    m = ctx.Manager()
    try:
        yield m
    finally:
        m.shutdown()


def test_seed_example(ctx, manager):
    """A child fills a managed dict and reverses a managed list; the parent sees both."""
    d = manager.dict()
    lst = manager.list(range(10))
    p = ctx.Process(target=_workers.fill_dict_and_reverse, args=(d, lst))
    p.start()
    p.join(SHORT_TIMEOUT)
    assert p.exitcode == 0
    assert str(d) == "{1: '1', '2': 2, 0.25: None}"
    assert str(lst) == "[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]"


def test_every_sync_manager_type(manager):
    """Each type SyncManager documents works through its proxy."""
    ns = manager.Namespace(a=1)
    ns.b = 2
    assert (ns.a, ns.b) == (1, 2)
    q = manager.Queue()
    q.put("x")
    assert q.get(timeout=SHORT_TIMEOUT) == "x"
    jq = manager.JoinableQueue()
    jq.put(1)
    jq.get()
    jq.task_done()
    jq.join()
    for lock in (manager.Lock(), manager.RLock(), manager.Semaphore(), manager.BoundedSemaphore()):
        with lock:
            pass
    cond = manager.Condition()
    with cond:
        assert cond.wait(0.01) is False
    event = manager.Event()
    event.set()
    assert event.is_set() and event.wait(0)
    barrier = manager.Barrier(1)
    assert barrier.wait() == 0 and barrier.parties == 1
    value = manager.Value("i", 7)
    value.value += 1
    assert value.value == 8
    array = manager.Array("i", range(4))
    array[0] = 9
    assert list(array) == [9, 1, 2, 3] and len(array) == 4
    d = manager.dict(a=1)
    assert sorted(d.keys()) == ["a"] and list(d.items()) == [("a", 1)] and list(d) == ["a"]
    with manager.Pool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
        assert pool.apply_async(abs, (-3,)).get(SHORT_TIMEOUT) == 3
        assert sorted(pool.imap_unordered(abs, [-4, -5])) == [4, 5]


def test_nested_proxies(manager):
    """A managed list stored in a managed dict comes back as a proxy to the same list."""
    d = manager.dict()
    d["inner"] = manager.list([1])
    inner = d["inner"]
    inner.append(2)
    assert d["inner"][:] == [1, 2]


def test_proxies_in_pool_workers(ctx, manager):
    """Proxies travel to pool workers, which change the shared object."""
    d = manager.dict()
    with ctx.Pool(2) as pool:
        pool.map(_workers.set_item, [(d, i) for i in range(20)])
    assert d.copy() == {i: i for i in range(20)}


class _FooBar:
    def f(self) -> str:
        return "f()"

    def _h(self) -> str:
        return "_h()"


class _MyManager(BaseManager):
    pass


_MyManager.register("Foo", _FooBar)
_MyManager.register("Bar", _FooBar, exposed=("f", "_h"))


def test_custom_manager_exposes_only_what_it_says():
    with _MyManager() as m:
        foo, bar = m.Foo(), m.Bar()
        assert foo.f() == "f()" and not hasattr(foo, "_h")
        with pytest.raises(polyproc.RemoteError):
            foo._callmethod("_h")
        assert bar._h() == "_h()"


@pytest.mark.timeout(60)
def test_dead_server_fails_calls_fast(manager):
    """The server killed by SIGKILL: the next call raises ManagerGoneError at once."""
    d = manager.dict()
    d["k"] = 1
    os.kill(manager._process.pid, signal.SIGKILL)
    manager._process.join(SHORT_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ManagerGoneError, match="is gone"):
        d["k"] = 2
    with pytest.raises(ManagerGoneError):
        manager.list()
    assert time.monotonic() - started < 1.0


@pytest.mark.timeout(60)
def test_dead_client_releases_its_references(ctx, manager):
    """A child that holds the last reference to an object and dies (SIGKILL) releases it."""
    before = manager._number_of_objects()
    lst = manager.list([1, 2, 3])
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_workers.use_proxy_then_block, args=(lst, writer))
    child.start()
    assert reader.recv() == 3
    del lst
    gc.collect()
    assert manager._number_of_objects() == before + 1  # the child still holds it
    child.kill()
    child.join(SHORT_TIMEOUT)
    assert wait_until(lambda: manager._number_of_objects() == before, 5)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ctx", ["fork"], indirect=True)
def test_many_clients_hammering_one_dict(ctx, manager):
    """32 processes write one dict and count under a managed lock: nothing is lost."""
    d, lock, counter = manager.dict(), manager.Lock(), manager.Value("i", 0)
    workers = [
        ctx.Process(target=_workers.hammer_dict, args=(d, lock, counter, w, 50))
        for w in range(32)
    ]
    for p in workers:
        p.start()
    for p in workers:
        p.join(SHORT_TIMEOUT * 2)
        assert p.exitcode == 0
    assert len(d) == 32 * 50
    assert counter.value == 32 * 50


def test_wrong_authkey_is_refused_and_the_server_goes_on(manager):
    d = manager.dict()
    intruder = SyncManager(address=manager.address, authkey=b"not the key")
    with pytest.raises(AuthenticationError):
        intruder.connect()
    d["still"] = "served"
    assert d["still"] == "served"


def test_shutdown_then_calls_fail(ctx):
    m = ctx.Manager()
    d = m.dict()
    m.shutdown()
    with pytest.raises(ManagerGoneError):
        d["k"] = 1


_REMOTE_SERVER = """
import queue, ssl, sys
from polyproc.managers import BaseManager

jobs = queue.Queue()

class QueueManager(BaseManager):
    pass

QueueManager.register("get_queue", callable=lambda: jobs)
if __name__ == "__main__":
    tls = None
    if len(sys.argv) > 1:  # mutual TLS: our certificate, and clients must show one
        cert_chain, ca_file = sys.argv[1:3]
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
        tls.load_cert_chain(cert_chain)
        tls.verify_mode = ssl.CERT_REQUIRED
    m = QueueManager(address=("127.0.0.1", 0), authkey=b"abracadabra",
                     server_ssl_context=tls)
    server = m.get_server()
    print(server.address[1], flush=True)
    server.serve_forever()
"""


class _QueueManager(BaseManager):
    pass


_QueueManager.register("get_queue")


def _start_remote_server(tmp_path, *tls_files: str) -> tuple[subprocess.Popen[str], int]:
    script = tmp_path / "queue_server.py"
    script.write_text(textwrap.dedent(_REMOTE_SERVER))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    server = subprocess.Popen([sys.executable, str(script), *tls_files],
                              stdout=subprocess.PIPE, text=True, env=env)
    return server, int(server.stdout.readline())


@pytest.mark.timeout(60)
def test_remote_manager_over_tcp(tmp_path):
    """The documentation's remote example: a server process on 127.0.0.1, a client that
    puts and another that gets, both by address and authkey."""
    server, port = _start_remote_server(tmp_path)
    try:
        putter = _QueueManager(address=("127.0.0.1", port), authkey=b"abracadabra")
        putter.connect()
        putter.get_queue().put("hello")
        getter = _QueueManager(address=("127.0.0.1", port), authkey=b"abracadabra")
        getter.connect()
        assert getter.get_queue().get(timeout=SHORT_TIMEOUT) == "hello"
        with pytest.raises(AuthenticationError):
            _QueueManager(address=("127.0.0.1", port), authkey=b"wrong").connect()
    finally:
        server.kill()
        server.wait(SHORT_TIMEOUT)


@pytest.mark.timeout(60)
def test_remote_manager_over_mutual_tls(tmp_path):
    """The same example with TLS both ways: the client checks the server's certificate,
    the server requires the client's; a client without a certificate, or without TLS,
    is refused and the server goes on serving."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client.polyproc.test")
    chain, ca_file = tmp_path / "server.pem", tmp_path / "ca.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
    ca.cert_pem.write_to_path(str(ca_file))
    server, port = _start_remote_server(tmp_path, str(chain), str(ca_file))
    address = ("127.0.0.1", port)
    try:
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(tls)
        client_cert.configure_cert(tls)
        putter = _QueueManager(address=address, authkey=b"abracadabra", ssl_context=tls)
        putter.connect()
        queue = putter.get_queue()
        queue.put("over tls")
        assert queue.get(timeout=SHORT_TIMEOUT) == "over tls"

        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(anonymous)  # trusts the server, but has no certificate to show
        with pytest.raises((ssl.SSLError, OSError, EOFError, AuthenticationError)):
            polyproc.connection.Client(address, authkey=b"abracadabra",
                                       ssl_context=anonymous).close()
        with pytest.raises((AuthenticationError, OSError, EOFError)):
            polyproc.connection.Client(address, authkey=b"abracadabra").close()
        queue.put("still served")
        assert queue.get(timeout=SHORT_TIMEOUT) == "still served"
    finally:
        server.kill()
        server.wait(SHORT_TIMEOUT)
