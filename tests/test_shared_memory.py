"""SharedMemory and ShareableList, and the tracker that leaves nothing in /dev/shm."""

from __future__ import annotations

import os
import pickle
import select
import signal
import stat
import subprocess
import sys
import textwrap
import warnings

import pytest

import polyproc
from polyproc._shared import _shm_tracker
from polyproc.shared_memory import ShareableList, SharedMemory
from tests import _shm_workers
from tests._support import SHORT_TIMEOUT, START_METHODS, wait_until

SHM = "/dev/shm"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How long the tracker may take to clean up after the application ended.
CLEANUP_TIMEOUT = 5.0


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM, name.lstrip("/")))


def _remove(*names: str) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(SHM, name.lstrip("/")))
        except FileNotFoundError:
            pass


@pytest.fixture
def shm():
    """A fresh 64-byte segment, unlinked after the test."""
    segment = SharedMemory(create=True, size=64)
    yield segment
    segment.close()
    _remove(segment.name)


# --- SharedMemory in one process ---------------------------------------------------------


def test_create_attach_read_write(shm):
    """A second handle on the same name sees the same bytes, both ways."""
    assert shm.name.startswith("psm_") and len(shm.name) == 12
    assert 64 == shm.size == len(shm.buf)
    assert bytes(64) == bytes(shm.buf)
    shm.buf[:5] = b"hello"
    other = SharedMemory(shm.name)
    try:
        assert b"hello" == bytes(other.buf[:5])
        other.buf[5:10] = b"world"
        assert b"helloworld" == bytes(shm.buf[:10])
    finally:
        other.close()


def test_the_segment_is_a_private_file_in_dev_shm(shm):
    """POSIX shared memory on Linux: /dev/shm/<name>, readable by its owner only."""
    info = os.stat(os.path.join(SHM, shm.name))
    assert stat.S_ISREG(info.st_mode)
    assert 0o600 == stat.S_IMODE(info.st_mode)
    assert 64 == info.st_size


def test_attach_ignores_size_and_reports_the_real_one(shm):
    """As in the standard library: the size given when attaching is ignored."""
    other = SharedMemory(shm.name, size=10)
    try:
        assert 64 == other.size
    finally:
        other.close()


def test_explicit_names_and_a_leading_slash(tmp_path):
    """A chosen name is used as is; "/name" and "name" are the same segment."""
    name = f"polyproc_test_{os.getpid()}_{os.urandom(4).hex()}"
    created = SharedMemory(name, create=True, size=8)
    try:
        assert name == created.name
        assert _exists(name)
        slashed = SharedMemory("/" + name)
        assert "/" + name == slashed.name
        slashed.buf[0] = 42
        assert 42 == created.buf[0]
        assert f"SharedMemory('/{name}', size=8)" == repr(slashed)
        slashed.close()
        with pytest.raises(FileExistsError):
            SharedMemory(name, create=True, size=8)
    finally:
        created.close()
        created.unlink()
    assert not _exists(name)


def test_close_and_unlink_semantics():
    """close is idempotent and leaves the name; unlink removes it, twice is an error."""
    segment = SharedMemory(create=True, size=16)
    name = segment.name
    segment.close()
    segment.close()
    assert segment.buf is None
    assert _exists(name)
    again = SharedMemory(name)  # still attachable after the creator closed
    again.close()
    segment.unlink()  # unlink works on a closed object
    assert not _exists(name)
    with pytest.raises(FileNotFoundError):
        segment.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)


def test_unlink_keeps_existing_mappings():
    """After unlink the name is gone but the processes that mapped it keep the memory."""
    segment = SharedMemory(create=True, size=16)
    other = SharedMemory(segment.name)
    segment.unlink()
    segment.buf[0] = 7
    assert 7 == other.buf[0]
    other.close()
    segment.close()


def test_close_with_an_exported_buffer_raises_buffer_error(shm):
    """Like mmap: the block cannot be unmapped while a view of it is alive."""
    view = shm.buf[:4]
    with pytest.raises(BufferError):
        shm.close()
    view.release()
    shm.close()
    assert shm.buf is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"create": True, "size": 0}, ValueError),
        ({"create": True, "size": -1}, ValueError),
        ({"create": True}, ValueError),
        ({"name": "x", "size": -1}, ValueError),
        ({}, ValueError),  # attaching needs a name
        ({"name": "polyproc_test_missing_" + os.urandom(4).hex()}, FileNotFoundError),
        ({"name": "a\0b", "create": True, "size": 1}, ValueError),
        ({"name": "a/b", "create": True, "size": 1}, OSError),
        ({"name": "/", "create": True, "size": 1}, OSError),
        ({"name": "", "create": True, "size": 1}, OSError),
        ({"name": "x" * 256, "create": True, "size": 1}, OSError),
        ({"create": True, "size": 1.5}, TypeError),
    ],
)
def test_bad_arguments_raise_at_the_call(kwargs, error):
    """Sizes and names are checked as the standard library checks them."""
    with pytest.raises(error):
        SharedMemory(**kwargs)


def test_error_numbers_of_bad_names():
    """POSIX shm_open's errors: EINVAL for a bad name, ENAMETOOLONG past 255 bytes."""
    import errno

    with pytest.raises(OSError) as info:
        SharedMemory("a/b", create=True, size=1)
    assert errno.EINVAL == info.value.errno
    with pytest.raises(OSError) as info:
        SharedMemory("x" * 256)
    assert errno.ENAMETOOLONG == info.value.errno


def test_pickles_by_name(shm):
    """Unpickling attaches the same block again."""
    shm.buf[:3] = b"abc"
    copy = pickle.loads(pickle.dumps(shm))
    try:
        assert copy is not shm
        assert (shm.name, shm.size) == (copy.name, copy.size)
        assert b"abc" == bytes(copy.buf[:3])
    finally:
        copy.close()


def test_numpy_array_on_the_buffer(shm):
    """The documented use: a numpy array backed by the block."""
    np = pytest.importorskip("numpy")
    array = np.ndarray((8,), dtype=np.int64, buffer=shm.buf)
    array[:] = np.arange(8)
    other = SharedMemory(shm.name)
    assert list(range(8)) == list(np.ndarray((8,), dtype=np.int64, buffer=other.buf))
    del array
    other.close()


def test_registration_failure_warns_and_never_raises(monkeypatch):
    """Without a reachable tracker, create() still works and says so once."""

    def broken(*args, **kwargs):
        raise OSError("tracker unreachable")

    monkeypatch.setattr(_shm_tracker, "_client", None)
    monkeypatch.setattr(_shm_tracker, "_deliver", broken)
    with pytest.warns(RuntimeWarning, match="shared memory tracker"):
        first = SharedMemory(create=True, size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = SharedMemory(create=True, size=8)  # warned once per process
    for segment in (first, second):
        segment.close()
        segment.unlink()


# --- SharedMemory across processes -----------------------------------------------------


def test_child_attaches_by_name(ctx, shm):
    """A child attaches by name, reads what the parent wrote and writes back."""
    shm.buf[:5] = b"hello"
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_shm_workers.attach_and_swap, args=(shm.name, w))
    p.start()
    w.close()
    assert r.poll(SHORT_TIMEOUT)
    assert (b"hello", 64) == r.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    assert b"child" == bytes(shm.buf[:5])


def test_shared_memory_object_as_process_argument(ctx, shm):
    """A SharedMemory passed to a Process is the same block in the child."""
    shm.buf[:5] = b"abcde"
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_shm_workers.use_object, args=(shm, w))
    p.start()
    w.close()
    assert r.poll(SHORT_TIMEOUT)
    assert (shm.name, 64, b"abcde") == r.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    assert b"CHILD" == bytes(shm.buf[:5])


def test_a_segment_created_by_a_child_outlives_it(ctx):
    """The child closes without unlinking and exits; the parent attaches afterwards."""
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_shm_workers.create_and_send, args=(w, b"made by a child"))
    p.start()
    w.close()
    assert r.poll(SHORT_TIMEOUT)
    name = r.recv()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    segment = SharedMemory(name)
    try:
        assert b"made by a child" == bytes(segment.buf)
    finally:
        segment.close()
        segment.unlink()


# --- ShareableList -----------------------------------------------------------------------


@pytest.fixture
def sample():
    """The standard library documentation's example list, unlinked after the test."""
    sl = ShareableList(["howdy", b"HoWdY", -273.154, 100, None, True, 42])
    yield sl
    sl.shm.close()
    _remove(sl.shm.name)


def test_shareable_list_reads(sample):
    """Values, length, iteration, negative indices, format, repr."""
    assert 7 == len(sample)
    assert ["howdy", b"HoWdY", -273.154, 100, None, True, 42] == list(sample)
    assert "howdy" == sample[0] and 42 == sample[-1] and sample[-2] is True
    assert sample[4] is None
    assert "8s8sdqxxxxxx?xxxxxxxx?q" == sample.format
    assert (
        f"ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42], "
        f"name={sample.shm.name!r})" == repr(sample)
    )
    with pytest.raises(IndexError):
        sample[7]
    with pytest.raises(IndexError):
        sample[-8]
    with pytest.raises(TypeError):
        sample[1:3]


def test_shareable_list_writes_and_type_changes(sample):
    """Any type fits any slot; str and bytes must fit the slot they were given."""
    sample[3] = 42
    assert 42 == sample[3]
    sample[4] = "some"  # None -> str: the 8-byte slot
    assert "some" == sample[4]
    assert "8s8sdq8sxxxxxxx?q" == sample.format
    with pytest.raises(ValueError, match="exceeds available storage"):
        sample[4] = "far too many"
    assert "some" == sample[4]
    sample[0] = "encodés"  # exactly 8 bytes of UTF-8
    assert "encodés" == sample[0]
    with pytest.raises(ValueError, match="exceeds available storage"):
        sample[0] = "encodées"  # 9 bytes
    sample[1] = 2.5  # bytes -> float
    sample[2] = b"xy"  # float -> bytes
    sample[5] = False
    sample[-1] = None
    assert ["encodés", 2.5, b"xy", 42, "some", False, None] == list(sample)
    with pytest.raises(IndexError, match="assignment index out of range"):
        sample[7] = 1


def test_shareable_list_keeps_trailing_nuls_and_empty_values():
    """Lengths are stored: b"a\\0\\0" stays three bytes (the standard library strips them)."""
    sl = ShareableList([b"a\0\0", "b\0", "", b"", "x" * 20])
    try:
        assert [b"a\0\0", "b\0", "", b"", "x" * 20] == list(sl)
        assert "8s8s8s8s24s" == sl.format
        sl[4] = "short"
        assert "short" == sl[4]
        sl[4] = b"\0" * 24
        assert b"\0" * 24 == sl[4]
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shareable_list_count_and_index(sample):
    """count and index compare with ==; index of a missing value raises ValueError."""
    sample[3] = 42
    assert 2 == sample.count(42)
    assert 1 == sample.count(b"HoWdY")
    assert 0 == sample.count(b"adios")
    assert 3 == sample.index(42)
    with pytest.raises(ValueError):
        sample.index("100")


def test_shareable_list_attach_copy_and_pickle(sample):
    """Attach by name, copy into a new named list, and pickle (as its name)."""
    same = ShareableList(name=sample.shm.name)
    same[-1] = 880
    assert 880 == sample[-1]
    assert sample.format == same.format
    same.shm.close()

    name = f"polyproc_test_{os.getpid()}_{os.urandom(4).hex()}"
    copy = ShareableList(sample, name=name)
    try:
        assert name == copy.shm.name
        assert list(sample) == list(copy)
        copy[-1] = 77
        assert 880 == sample[-1]
    finally:
        copy.shm.close()
        copy.shm.unlink()

    small = pickle.dumps(sample)
    unpickled = pickle.loads(small)
    unpickled[4] = "changed"
    assert "changed" == sample[4]
    unpickled.shm.close()
    big = ShareableList(range(400))
    try:
        assert len(small) == len(pickle.dumps(big))  # only the name travels
    finally:
        big.shm.close()
        big.shm.unlink()


def test_empty_shareable_list():
    """An empty list has a block, no items and an empty format."""
    sl = ShareableList()
    try:
        assert 0 == len(sl)
        assert "" == sl.format
        assert 0 == sl.count("any")
        with pytest.raises(ValueError):
            sl.index(None)
        assert [] == list(ShareableList(name=sl.shm.name))
    finally:
        sl.shm.close()
        sl.shm.unlink()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([1], TypeError),
        (bytearray(b"x"), TypeError),
        (2**63, OverflowError),
        (-(2**63) - 1, OverflowError),
        (b"x" * 10_000_000, ValueError),
        ("é" * 5_000_000, ValueError),  # 10M bytes once encoded
    ],
)
def test_shareable_list_refuses_what_it_cannot_hold(value, error):
    """Other types, ints beyond 64 bits, str and bytes of 10M bytes: nothing is created."""
    name = f"polyproc_test_{os.getpid()}_{os.urandom(4).hex()}"
    with pytest.raises(error):
        ShareableList([0, value], name=name)
    assert not _exists(name)
    sl = ShareableList([0])
    try:
        with pytest.raises(error):
            sl[0] = value
        assert 0 == sl[0]
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shareable_list_limits_and_subclasses():
    """The 64-bit edges and a 9,999,999-byte value fit; int and str subclasses are stored."""
    import enum

    class Colour(enum.IntEnum):
        RED = 1

    big = b"y" * 9_999_999
    sl = ShareableList([2**63 - 1, -(2**63), Colour.RED, big])
    try:
        assert [2**63 - 1, -(2**63), 1, big] == list(sl)
        assert int is type(sl[2])
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_attaching_something_else_as_a_shareable_list(shm):
    """A block that is not a ShareableList is refused with ValueError."""
    with pytest.raises(ValueError, match="does not hold a ShareableList"):
        ShareableList(name=shm.name)


def test_shareable_list_after_close(sample):
    """Using a list whose block was closed raises ValueError, not a crash."""
    sample.shm.close()
    with pytest.raises(ValueError, match="closed"):
        sample[0]


def test_shareable_list_across_processes(ctx):
    """Passed as an argument or attached by name, a child sees and changes the list."""
    sl = ShareableList([5, "hello", 1.5, False])
    try:
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_shm_workers.edit_list, args=(sl, w))
        p.start()
        w.close()
        assert r.poll(SHORT_TIMEOUT)
        assert [5, "hello", 1.5, False] == r.recv()
        p.join(SHORT_TIMEOUT)
        assert 0 == p.exitcode
        assert [-5, "children", None, False] == list(sl)

        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_shm_workers.attach_list, args=(sl.shm.name, w))
        p.start()
        w.close()
        assert r.poll(SHORT_TIMEOUT)
        assert ([-5, "children", None, False], "q8sxxxxxx?xxxxxxxx?") == r.recv()
        p.join(SHORT_TIMEOUT)
        assert 0 == p.exitcode
        assert sl[-1] is True
    finally:
        sl.shm.close()
        sl.shm.unlink()


# --- The tracker: nothing is left in /dev/shm ----------------------------------------------


def _script(tmp_path, body: str):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop(_shm_tracker.ENV_VAR, None)  # this process's tracker is not the script's
    return [sys.executable, str(path)], env


def _read_line(proc: subprocess.Popen[str]) -> str:
    """The next line the script prints, waiting at most SHORT_TIMEOUT for it."""
    ready, _, _ = select.select([proc.stdout], [], [], SHORT_TIMEOUT)
    assert ready, "the script printed nothing"
    return proc.stdout.readline()


def _run(tmp_path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv, env = _script(tmp_path, body)
    return subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=SHORT_TIMEOUT,
        cwd=tmp_path,
        env=env,
    )


KILLED_SCRIPT = """
    import signal, sys
    import polyproc
    from polyproc.shared_memory import ShareableList, SharedMemory
    from tests import _shm_workers

    if __name__ == "__main__":
        ctx = polyproc.get_context(sys.argv[1])
        mine = [SharedMemory(create=True, size=4096) for _ in range(3)]
        mine.append(ShareableList([1, "two"]).shm)
        r, w = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_shm_workers.create_and_wait, args=(w, 2))
        p.start()
        theirs = r.recv()
        print(p.pid, *[s.name for s in mine], *theirs, flush=True)
        if sys.argv[2] == "main":
            while True:
                signal.pause()
        sys.stdin.readline()  # the test has killed the child; end normally
"""


@pytest.mark.parametrize("victim", ["main", "child"])
@pytest.mark.parametrize("method", START_METHODS)
def test_nothing_is_left_after_a_sigkill(tmp_path, method, victim):
    """Segments of the main process and of a child go when the application ends, even
    when its main process or a child was killed with SIGKILL."""
    argv, env = _script(tmp_path, KILLED_SCRIPT)
    proc = subprocess.Popen(
        [*argv, method, victim],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    names: list[str] = []
    try:
        child_pid, *names = _read_line(proc).split()
        assert 6 == len(names), proc.communicate(timeout=SHORT_TIMEOUT)
        assert all(_exists(name) for name in names)
        if victim == "main":
            proc.kill()
        else:
            os.kill(int(child_pid), signal.SIGKILL)
            proc.stdin.write("done\n")
            proc.stdin.flush()
        proc.wait(SHORT_TIMEOUT)
        assert wait_until(lambda: not any(_exists(n) for n in names), CLEANUP_TIMEOUT), [
            n for n in names if _exists(n)
        ]
    finally:
        proc.kill()
        proc.communicate(timeout=SHORT_TIMEOUT)
        _remove(*names)


def test_forkserver_started_before_the_tracker(tmp_path):
    """A fork-server child (whose environment predates the tracker) uses the main
    process's tracker: its segment outlives it, and goes when the application ends."""
    result = _run(
        tmp_path,
        """
        import polyproc
        from polyproc.shared_memory import SharedMemory
        from tests import _shm_workers

        if __name__ == "__main__":
            ctx = polyproc.get_context("forkserver")
            p = ctx.Process(target=print, args=())
            p.start(); p.join()  # the fork server exists before any segment
            mine = SharedMemory(create=True, size=8)  # starts the tracker
            r, w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_shm_workers.create_and_send, args=(w, b"forkserver"))
            p.start()
            name = r.recv()
            p.join()
            theirs = SharedMemory(name)
            print(bytes(theirs.buf).decode(), mine.name, name)
            # Ends without unlinking either: the tracker does.
        """,
    )
    assert 0 == result.returncode, result.stderr
    text, *names = result.stdout.split()
    try:
        assert "forkserver" == text
        assert wait_until(lambda: not any(_exists(n) for n in names), CLEANUP_TIMEOUT)
        assert "There appear to be 2 leaked shared_memory objects" in result.stderr
    finally:
        _remove(*names)


def test_unlinked_attached_and_replaced_segments_are_not_touched(tmp_path, shm):
    """The tracker removes only what the application created and did not unlink: not a
    block it merely attached, not one it unlinked, not a new file under an old name."""
    replaced = f"polyproc_test_{os.getpid()}_{os.urandom(4).hex()}"
    result = _run(
        tmp_path,
        """
        import os, sys
        from polyproc.shared_memory import SharedMemory

        attached = SharedMemory(sys.argv[1])
        attached.close()
        unlinked = SharedMemory(create=True, size=8)
        unlinked.close()
        unlinked.unlink()
        replaced = SharedMemory(sys.argv[2], create=True, size=8)
        replaced.close()
        # Unlinked behind polyproc's back, then a new file under the same name.
        os.unlink("/dev/shm/" + sys.argv[2])
        os.close(os.open("/dev/shm/" + sys.argv[2], os.O_CREAT | os.O_RDWR, 0o600))
        print(unlinked.name)
        """,
        shm.name,
        replaced,
    )
    try:
        assert 0 == result.returncode, result.stderr
        assert "" == result.stderr
        assert _exists(shm.name)
        assert _exists(replaced)
        assert not _exists(result.stdout.strip())
    finally:
        _remove(replaced)


def test_a_dead_tracker_is_replaced(tmp_path):
    """If the tracker is killed, the next creation starts another one without a word."""
    argv, env = _script(
        tmp_path,
        """
        import signal, warnings
        import psutil
        from polyproc.shared_memory import SharedMemory

        warnings.simplefilter("error")
        first = SharedMemory(create=True, size=8)
        [tracker] = [
            c for c in psutil.Process().children() if "_shm_tracker" in " ".join(c.cmdline())
        ]
        tracker.kill()
        tracker.wait(30)
        second = SharedMemory(create=True, size=8)
        print(first.name, second.name, flush=True)
        while True:
            signal.pause()
        """,
    )
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env
    )
    names: list[str] = []
    try:
        names = _read_line(proc).split()
        assert 2 == len(names), proc.communicate(timeout=SHORT_TIMEOUT)
        proc.kill()
        proc.wait(SHORT_TIMEOUT)
        # The first segment's tracker died with its record; the second's cleans up.
        assert wait_until(lambda: not _exists(names[1]), CLEANUP_TIMEOUT)
        assert _exists(names[0])
    finally:
        proc.kill()
        proc.communicate(timeout=SHORT_TIMEOUT)
        _remove(*names)


def test_the_public_module():
    """polyproc.shared_memory mirrors multiprocessing.shared_memory's names."""
    import polyproc.shared_memory as module

    assert {"SharedMemory", "ShareableList"} == set(module.__all__)
    assert module.SharedMemory is SharedMemory
    assert polyproc.shared_memory is module
