"""The public surface: the stdlib's names, contexts and start methods."""

from __future__ import annotations

import importlib
import inspect

import pytest

import polyproc

# Names of multiprocessing.__all__ that later layers provide (shared state, pools,
# managers); each moves into IMPLEMENTED as its issue lands.
NOT_YET: set[str] = set()
STDLIB_ALL = [
    "Array", "AuthenticationError", "Barrier", "BoundedSemaphore", "BufferTooShort",
    "Condition", "Event", "JoinableQueue", "Lock", "Manager", "Pipe", "Pool", "Process",
    "ProcessError", "Queue", "RLock", "RawArray", "RawValue", "Semaphore", "SimpleQueue",
    "TimeoutError", "Value", "active_children", "allow_connection_pickling", "cpu_count",
    "current_process", "freeze_support", "get_all_start_methods", "get_context", "get_logger",
    "get_start_method", "log_to_stderr", "parent_process", "reducer", "set_executable",
    "set_forkserver_preload", "set_start_method",
]


def test_stdlib_names_are_present():
    """Every name of multiprocessing.__all__ that this stage covers exists in polyproc."""
    missing = [n for n in STDLIB_ALL if n not in NOT_YET and not hasattr(polyproc, n)]
    assert [] == missing
    assert set(STDLIB_ALL) - NOT_YET <= set(polyproc.__all__)


@pytest.mark.parametrize(
    "module",
    [
        "connection", "process", "context", "util", "exceptions", "synchronize",
        "sharedctypes", "queues", "shared_memory", "pool",
    ],
)
def test_all_lists_what_exists(module):
    """Each public module's __all__ names only things that exist, and nothing is unlisted."""
    mod = importlib.import_module(f"polyproc.{module}")
    for name in mod.__all__:
        assert hasattr(mod, name), name
    for name, obj in vars(mod).items():
        if name.startswith("_") or inspect.ismodule(obj):
            continue
        if getattr(obj, "__module__", None) == mod.__name__ and callable(obj):
            assert name in mod.__all__, name


def test_public_classes_resolve_by_their_module_path():
    """Pickle finds classes by __module__ and __qualname__: both must point back."""
    for module in (
        "connection", "process", "context", "exceptions", "synchronize", "sharedctypes",
        "queues", "shared_memory", "pool",
    ):
        mod = importlib.import_module(f"polyproc.{module}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                home = importlib.import_module(obj.__module__)
                assert getattr(home, obj.__qualname__) is obj


def test_contexts():
    """get_context gives objects with the same surface; unknown methods raise ValueError."""
    methods = polyproc.get_all_start_methods()
    assert {"fork", "spawn", "forkserver"} == set(methods)
    for method in methods:
        ctx = polyproc.get_context(method)
        assert method == ctx.get_start_method()
        assert ctx.Process is not polyproc.Process
        assert issubclass(ctx.Process, polyproc.process.BaseProcess)
        with pytest.raises(ValueError):
            ctx.set_start_method("spawn")
    with pytest.raises(ValueError):
        polyproc.get_context("threads")


def test_set_start_method_once_unless_forced():
    """The default method is fixed once; force=True changes it; None with force resets."""
    saved = polyproc.get_start_method(allow_none=True)
    try:
        polyproc.set_start_method(None, force=True)
        assert polyproc.get_start_method(allow_none=True) is None
        polyproc.set_start_method("spawn")
        with pytest.raises(RuntimeError):
            polyproc.set_start_method("fork")
        polyproc.set_start_method("forkserver", force=True)
        assert "forkserver" == polyproc.get_start_method()
        with pytest.raises(ValueError):
            polyproc.set_start_method("bogus", force=True)
    finally:
        polyproc.set_start_method(saved, force=True)


def test_default_follows_the_running_python():
    """Defaults match multiprocessing's for this Python (fork on Linux before 3.14)."""
    import sys

    expected = "forkserver" if sys.version_info >= (3, 14) else "fork"
    assert expected == polyproc.get_all_start_methods()[0]


def test_misc_functions():
    """cpu_count, freeze_support, loggers and the no-op compatibility calls."""
    assert polyproc.cpu_count() >= 1
    polyproc.freeze_support()
    polyproc.allow_connection_pickling()
    logger = polyproc.get_logger()
    assert logger is polyproc.log_to_stderr()
    assert polyproc.current_process().name == "MainProcess"
    assert polyproc.parent_process() is None
