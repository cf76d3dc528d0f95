"""Value, Array, RawValue, RawArray and the synchronized wrappers."""

from __future__ import annotations

import ctypes

import pytest

import polyproc
from polyproc import sharedctypes
from tests import _workers
from tests._support import SHORT_TIMEOUT


def test_seed_value_and_array_example(ctx):
    """The seed: a child sets num to pi and negates the array; the parent sees both."""
    num = ctx.Value("d", 0.0)
    arr = ctx.Array("i", range(10))
    assert 0.0 == num.value and list(range(10)) == arr[:]
    p = ctx.Process(target=_workers.negate_all, args=(num, arr))
    p.start()
    p.join(SHORT_TIMEOUT)
    assert 0 == p.exitcode
    assert 3.1415927 == num.value
    assert [0, -1, -2, -3, -4, -5, -6, -7, -8, -9] == arr[:]


def test_raw_objects_and_ctypes_types():
    """Raw objects are plain ctypes objects; ctypes types work like typecodes."""
    raw = polyproc.RawValue(ctypes.c_double, 1.5)
    assert 1.5 == raw.value
    arr = polyproc.RawArray("b", 4)
    assert [0, 0, 0, 0] == list(arr)

    class Point(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int)]

    point = polyproc.Value(Point, 1, 2)
    assert (1, 2) == (point.x, point.y)
    point.y = 5
    assert 5 == point.get_obj().y


def test_lock_options():
    """lock=False gives the raw object, a lock object is used, anything else is refused."""
    assert isinstance(polyproc.Value("i", 1, lock=False), ctypes.c_int)
    lock = polyproc.Lock()
    assert polyproc.Value("i", 1, lock=lock).get_lock() is lock
    with pytest.raises(AttributeError):
        polyproc.Value("i", 1, lock="no")
    value = polyproc.Value("i", 1)
    with value:
        value.value += 1
    assert 2 == value.value


def test_char_arrays_have_value_and_raw():
    """Array('c') exposes value (to the first NUL) and raw (all bytes)."""
    arr = polyproc.Array("c", b"hello\0world")
    assert b"hello" == arr.value
    assert b"hello\0world" == arr.raw
    arr.value = b"HI"
    assert b"HI" == arr.value
    assert 11 == len(arr)


def test_copy_and_synchronized():
    """copy() makes an independent shared copy; synchronized() wraps a raw object."""
    raw = polyproc.RawArray("i", [1, 2, 3])
    twin = sharedctypes.copy(raw)
    twin[0] = 100
    assert 1 == raw[0]
    wrapped = sharedctypes.synchronized(raw)
    assert [1, 2, 3] == wrapped[:]
    with pytest.raises(TypeError):
        sharedctypes.synchronized(wrapped)


@pytest.mark.parametrize("bad", ["x", "", object(), int])
def test_bad_typecodes_raise_type_error(bad):
    """An unknown typecode or a non-ctypes type is refused at the call."""
    with pytest.raises(TypeError):
        polyproc.Value(bad, 0)
    with pytest.raises(TypeError):
        polyproc.RawArray(bad, 3)


def test_negative_array_size_raises():
    """A negative size is a ValueError."""
    with pytest.raises(ValueError):
        polyproc.Array("i", -1)


def test_a_value_pickled_once_unpickles_in_several_processes():
    """One pickle of a Value, unpickled by two fresh interpreters in turn (as a pool task
    run again after its worker died): the shared memory's descriptor is offered to both."""
    from polyproc._wire import _pickling

    ctx = polyproc.get_context("spawn")
    value = ctx.Value("i", 42)
    data = _pickling.dumps(value)
    for _ in range(2):
        receive, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_workers.read_pickled_value, args=(data, send))
        child.start()
        assert receive.poll(SHORT_TIMEOUT) and 42 == receive.recv()
        child.join(SHORT_TIMEOUT)
        assert 0 == child.exitcode
