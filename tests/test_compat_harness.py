"""Unit tests of the compatibility harness (tests/compat): the rewriter and the classifier.

Fast and in-process: no test here starts a process or imports the standard library's
multiprocessing. The few tests that look at CPython's installed suite only parse its text.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import shutil
import sys
import textwrap
import tokenize
import types
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat import _classify, _quick
from tests.compat import _standins as _standins_source
from tests.compat._classify import Classifier, area_of, check_reference, type_of
from tests.compat._rewrite import (
    PATH_ENV,
    rewrite_package_refs,
    rewrite_preload_script,
    rewrite_string_literal,
    rewrite_suite,
)


def _installed_suite() -> Path | None:
    spec = importlib.util.find_spec("test._test_multiprocessing")
    return Path(spec.origin) if spec is not None and spec.origin else None


SUITE = _installed_suite()
needs_suite = pytest.mark.skipif(SUITE is None, reason="CPython's test suite is not installed")


def _names(source: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type == tokenize.NAME]


# -- rewriter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [
    ("import multiprocessing.connection\n", "import polyproc.connection\n"),
    ("from multiprocessing import util\n", "from polyproc import util\n"),
    ("from multiprocessing.connection import wait\n", "from polyproc.connection import wait\n"),
    ("p = multiprocessing.Process(target=f)\n", "p = polyproc.Process(target=f)\n"),
    ("import multiprocessing as mp\n", "import polyproc as mp\n"),
])
def test_package_name_tokens_are_rewritten(before: str, after: str) -> None:
    """The NAME token multiprocessing, alone or dotted, becomes the target package."""
    assert after == rewrite_package_refs(before, "polyproc")


@pytest.mark.parametrize("source", [
    "_multiprocessing = import_helper.import_module('_multiprocessing')\n",
    "s = _multiprocessing.SemLock(1, 1, 1, name, False)\n",
    "support.skip_if_broken_multiprocessing_synchronize()\n",
    "import test.support\nfrom test import support\n",
    "x = obj.multiprocessing\n",
    "PRELOAD = ['__main__', 'test.test_multiprocessing_forkserver']\n",
])
def test_other_names_are_left_alone(source: str) -> None:
    """_multiprocessing, test.support, attributes named multiprocessing: untouched."""
    assert source == rewrite_package_refs(source, "polyproc")


@pytest.mark.parametrize("literal", [
    "'unclosed running multiprocessing pool'",
    '"requires multiprocessing.sharedctypes"',
    '"test needs multiprocessing.reduction"',
    '"test_multiprocessing.py"',
    'f"multiprocessing.Manager still has "',
    "b'import multiprocessing'",
])
def test_message_strings_are_left_alone(literal: str) -> None:
    """Prose, including texts compared word for word, and bytes keep their wording."""
    assert literal == rewrite_string_literal(literal, "polyproc")


@pytest.mark.parametrize(("before", "after"), [
    ("'multiprocessing.shared_memory._make_filename'",
     "'polyproc.shared_memory._make_filename'"),
    ("'multiprocessing.'", "'polyproc.'"),
    ("'multiprocessing'", "'polyproc'"),
    ('f"{multiprocessing.active_children()} "', 'f"{polyproc.active_children()} "'),
    ('f"{{multiprocessing}} {multiprocessing.cpu_count()}"',
     'f"{{multiprocessing}} {polyproc.cpu_count()}"'),
])
def test_package_references_in_strings_are_rewritten(before: str, after: str) -> None:
    """Dotted module paths (mock.patch targets) and f-string expressions name the package."""
    assert after == rewrite_string_literal(before, "polyproc")


def test_child_script_strings_are_rewritten_line_for_line() -> None:
    """A -c script keeps its lines; every package reference in it, quoted or not, changes."""
    source = textwrap.dedent('''\
        rc, out, err = script_helper.assert_python_ok("-c", """if 1:
            import sys
            assert "multiprocessing" not in sys.modules, "already imported!"
            import multiprocessing
            from multiprocessing import shared_memory
            import _multiprocessing
            """)
        x = 1
        ''')
    result = rewrite_package_refs(source, "polyproc")

    assert len(source.splitlines()) == len(result.splitlines())
    assert '"polyproc" not in sys.modules' in result
    assert "    import polyproc\n" in result
    assert "from polyproc import shared_memory" in result
    assert "import _multiprocessing" in result
    assert "multiprocessing" not in result.replace("_multiprocessing", "")


def test_stdlib_target_rewrites_no_package_reference() -> None:
    """With target multiprocessing the package references stay as they are."""
    source = "import multiprocessing\nq = 'multiprocessing.queues.Queue'\n"
    assert source == rewrite_package_refs(source, "multiprocessing")


def test_self_reference_points_at_the_copy() -> None:
    """test_flags' child (run with -E -S) imports the copy, found through PATH_ENV."""
    source = ("prog = ('from test._test_multiprocessing import TestFlags; ' +\n"
              "        'TestFlags.run_in_child()')\n")
    result = rewrite_package_refs(source, "polyproc", self_refs=True)
    namespace: dict[str, str] = {}
    exec(result, namespace)
    prog = namespace["prog"]

    assert "from _test_multiprocessing import TestFlags" in prog
    assert f'os.environ["{PATH_ENV}"]' in prog
    compile(prog, "<prog>", "exec")


def test_forkserver_preload_points_at_the_generated_runner() -> None:
    """The suite preloads its forkserver runner module; ours is _compat_run_forkserver."""
    source = "PRELOAD = ['__main__', 'test.test_multiprocessing_forkserver']\n"
    result = rewrite_package_refs(source, "polyproc", self_refs=True)
    assert "PRELOAD = ['__main__', '_compat_run_forkserver']\n" == result


def test_suite_gets_standins_without_shifting_lines() -> None:
    """The stand-ins are installed on the line of the first import, before it."""
    source = "#\n# comment\n\nimport unittest\nimport multiprocessing\n"
    result = rewrite_suite(source, "polyproc")

    assert len(source.splitlines()) == len(result.splitlines())
    assert result.splitlines()[3] == (
        "import _compat_standins; _compat_standins.install(); import unittest")
    assert result.splitlines()[4] == "import polyproc"


def test_preload_script_imports_itself_from_its_directory() -> None:
    """mp_preload.py (run with -I) preloads itself as mp_preload, not test.mp_preload."""
    source = textwrap.dedent('''\
        import multiprocessing

        if __name__ == "__main__":
            modname = "test.mp_preload"
            __import__(modname)
        ''')
    result = rewrite_preload_script(source, "polyproc")

    assert 'modname = "mp_preload"' in result
    assert "_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__)))" in result
    assert "import polyproc" in result
    compile(result, "mp_preload.py", "exec")


@needs_suite
def test_installed_suite_rewrites_cleanly() -> None:
    """CPython's suite: same line count, compiles, no package NAME left, prose intact."""
    assert SUITE is not None
    source = SUITE.read_text(encoding="utf-8")
    result = rewrite_suite(source, "polyproc")

    assert len(source.splitlines()) == len(result.splitlines())
    compile(result, "_test_multiprocessing.py", "exec")
    assert "multiprocessing" not in _names(result)
    assert source.count("_multiprocessing.") == result.count("_multiprocessing.")
    assert "'unclosed running multiprocessing pool'" in result
    assert "test._test_multiprocessing" not in result


# -- classifier -------------------------------------------------------------------------------

SAMPLE = textwrap.dedent('''\
    import os, sys, threading, unittest
    import multiprocessing.connection
    import multiprocessing.heap
    from multiprocessing import util
    _multiprocessing = import_helper.import_module('_multiprocessing')

    def close_queue(queue):
        if isinstance(queue, multiprocessing.queues.Queue):
            queue._reader.close()

    def helper_with_private():
        return multiprocessing.process._dangling

    class BaseTestCase(object):
        ALLOWED_TYPES = ('processes', 'manager', 'threads')
        def assertSomething(self):
            return multiprocessing.process._dangling

    class _TestThing(BaseTestCase):
        def test_public(self):
            p = self.Process(target=self._child, args=(self.Queue(),))
            p.start()
            close_queue(self.Queue())
            sys._getframe()
            threading._dangling
        @classmethod
        def _child(cls, q):
            q.put(cls.TYPE)
        def test_heap(self):
            multiprocessing.heap.BufferWrapper(1)
        def test_families(self):
            self.assertIn('AF_UNIX', self.connection.families)
        def test_popen(self):
            p = self.Process(target=os.getpid)
            p._popen.poll()
        def test_callmethod(self):
            proxy = self.manager.list()
            proxy._callmethod('__len__')
        def test_pool(self):
            with self.Pool(2) as pool:
                pool.map(len, ['a'])
        def test_via_helper(self):
            self._private_helper()
        def _private_helper(self):
            util.Finalize(None, print)
        def test_via_function(self):
            helper_with_private()
        def test_by_type(self):
            if self.TYPE == 'processes':
                multiprocessing.heap.BufferWrapper(1)
        def test_child_script(self):
            script_helper.assert_python_ok('-c', """if 1:
                from multiprocessing import resource_tracker
                resource_tracker.ensure_running()
                """)
        def test_mock_target(self):
            with unittest.mock.patch('multiprocessing.shared_memory._make_filename'):
                pass
        def test_parent_process(self):
            from multiprocessing.process import parent_process
            parent_process()
        def test_c_module(self):
            _multiprocessing.SemLock
        def test_own_underscores(self):
            self._testMethodName
            self.pool._pool

    class _TestWithSetUp(BaseTestCase):
        def setUp(self):
            self.old = multiprocessing.heap.BufferWrapper._heap
        def test_anything(self):
            self.assertTrue(True)
    ''')


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    """A classifier of the synthetic SAMPLE suite."""
    return Classifier(SAMPLE)


@pytest.mark.parametrize(("runtime_class", "test", "expected"), [
    ("WithProcessesTestThing", "test_public", ()),
    ("WithProcessesTestThing", "test_heap", ("multiprocessing.heap",)),
    ("WithProcessesTestThing", "test_families", ("multiprocessing.connection.families",)),
    ("WithThreadsTestThing", "test_families", ("multiprocessing.dummy.connection.families",)),
    ("WithProcessesTestThing", "test_popen", ("attribute p._popen",)),
    ("WithManagerTestThing", "test_callmethod", ()),
    ("WithProcessesTestThing", "test_pool", ()),
    ("WithManagerTestThing", "test_pool", ("multiprocessing.Manager().Pool",)),
    ("WithProcessesTestThing", "test_via_helper", ("multiprocessing.util",)),
    ("WithProcessesTestThing", "test_via_function", ("multiprocessing.process._dangling",)),
    ("WithProcessesTestThing", "test_by_type", ("multiprocessing.heap",)),
    ("WithThreadsTestThing", "test_by_type", ()),
    ("WithProcessesTestThing", "test_child_script", ("multiprocessing.resource_tracker",)),
    ("WithProcessesTestThing", "test_mock_target",
     ("multiprocessing.shared_memory._make_filename",)),
    ("WithProcessesTestThing", "test_parent_process", ()),
    ("WithProcessesTestThing", "test_own_underscores", ("attribute self.pool._pool",)),
    ("WithProcessesTestWithSetUp", "test_anything", ("multiprocessing.heap",)),
])
def test_classification(classifier: Classifier, runtime_class: str, test: str,
                        expected: tuple[str, ...]) -> None:
    """Private names are found in the test, its helpers, set-up, strings and mixin attributes."""
    defining = "_TestWithSetUp" if "WithSetUp" in runtime_class else "_TestThing"
    verdict = classifier.classify(runtime_class, f"{defining}.{test}")

    assert expected == verdict.private_refs
    assert verdict.public == (not expected)


def test_c_module_is_private(classifier: Classifier) -> None:
    """The CPython C module _multiprocessing is not part of the package's API."""
    verdict = classifier.classify("WithProcessesTestThing", "_TestThing.test_c_module")

    assert not verdict.public
    assert ("_multiprocessing (CPython's C accelerator, not part of the package)",
            ) == verdict.private_refs


def test_unknown_source_counts_as_public(classifier: Classifier) -> None:
    """A test whose source cannot be found is reported, not silently dropped."""
    verdict = classifier.classify("Whatever", "Nowhere.test_x")

    assert verdict.public
    assert "not found" in verdict.note


@pytest.mark.parametrize(("ref", "expected"), [
    ("multiprocessing.Process", None),
    ("multiprocessing.get_context().Process", None),
    ("multiprocessing.connection.Listener.address", None),
    ("multiprocessing.managers.SharedMemoryManager().ShareableList", None),
    ("multiprocessing.pool.RUN", "multiprocessing.pool.RUN"),
    ("multiprocessing.util.get_temp_dir", "multiprocessing.util"),
    ("multiprocessing.Manager().JoinableQueue", "multiprocessing.Manager().JoinableQueue"),
    ("multiprocessing.Process._bootstrap.x", "multiprocessing.Process._bootstrap"),
    ("multiprocessing.Manager().list()._callmethod", None),
])
def test_check_reference(ref: str, expected: str | None) -> None:
    """References are checked against the documented API, namespace by namespace."""
    assert expected == check_reference(ref)


@pytest.mark.parametrize(("cls", "area"), [
    ("WithProcessesTestProcess", "Process"),
    ("WithProcessesTestPoolWorkerLifetime", "Pool"),
    ("TestPoolNotLeakOnFailure", "Pool"),
    ("WithProcessesTestQueue", "Queue"),
    ("TestSimpleQueue", "Queue"),
    ("WithProcessesTestBarrier", "sync"),
    ("SemLockTests", "sync"),
    ("WithProcessesTestArray", "sharedctypes"),
    ("WithManagerTestQueue", "Manager"),
    ("TestSyncManagerTypes", "Manager"),
    ("WithProcessesTestListenerClient", "connection"),
    ("TestWait", "connection"),
    ("WithProcessesTestSharedMemory", "shared_memory"),
    ("WithThreadsTestLock", "dummy"),
    ("_TestImportStar", "other"),
    ("TestStartMethod", "other"),
])
def test_area_of(cls: str, area: str) -> None:
    """Each class counts towards one area; manager and threads variants by their type."""
    assert area == area_of(cls)


def test_type_of() -> None:
    """The mixin type comes from the generated class name."""
    assert ("processes", "threads", "manager", None) == tuple(
        type_of(c) for c in ("WithProcessesTestX", "WithThreadsTestX", "WithManagerTestX",
                             "TestWait"))


@needs_suite
@pytest.mark.parametrize(("runtime_class", "qualname", "public"), [
    ("WithProcessesTestProcess", "_TestProcess.test_process", True),
    ("WithProcessesTestProcess", "_TestProcess.test_parent_process", True),
    ("WithProcessesTestProcess", "_TestProcess.test_forkserver_sigkill", False),
    ("WithProcessesTestHeap", "_TestHeap.test_heap", False),
    ("WithProcessesTestPool", "_TestPool.test_apply", True),
    ("WithManagerTestPool", "_TestPool.test_apply", False),
    ("WithProcessesTestListenerClient", "_TestListenerClient.test_listener_client", False),
    ("WithProcessesTestConnection", "_TestConnection.test_connection", True),
    ("WithThreadsTestBarrier", "_TestBarrier.test_barrier", True),
    ("WithProcessesTestBarrier", "_TestBarrier.test_barrier", False),
])
def test_installed_suite_classification(runtime_class: str, qualname: str, public: bool) -> None:
    """Spot checks against CPython's real suite (parsed, not imported)."""
    assert SUITE is not None
    classifier = Classifier(SUITE.read_text(encoding="utf-8"))
    assert public == classifier.classify(runtime_class, qualname).public


# -- stand-ins --------------------------------------------------------------------------------

_FAKE = "compat_fake_package"


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The stand-ins module installed for a fake package that has only a few names."""
    pytest.importorskip("test.support", reason="CPython's test package is not installed")
    package = tmp_path / _FAKE
    package.mkdir()
    (package / "__init__.py").write_text("def Process():\n    return 'real'\n")
    (package / "util.py").write_text("def get_temp_dir():\n    return 'real'\n")
    (package / "connection.py").write_text("def Client():\n    return 'real'\n")
    shutil.copyfile(Path(_standins_source.__file__), tmp_path / "_compat_standins_under_test.py")
    config = {"target": _FAKE,
              "documented": {k: sorted(v) for k, v in _classify.DOCUMENTED.items()}}
    (tmp_path / "_compat_config.json").write_text(json.dumps(config))
    monkeypatch.syspath_prepend(str(tmp_path))
    from test import support  # restored by monkeypatch: install() replaces this function

    monkeypatch.setattr(support, "skip_if_broken_multiprocessing_synchronize",
                        support.skip_if_broken_multiprocessing_synchronize)
    module = importlib.import_module("_compat_standins_under_test")
    try:
        module.install()
        yield module
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in (_FAKE, module.__name__)]:
            del sys.modules[name]


def test_standins_supply_only_what_is_missing(standins: types.ModuleType) -> None:
    """Private stand-ins and placeholders appear; what the package has is left as it is."""
    package = sys.modules[_FAKE]
    util = sys.modules[f"{_FAKE}.util"]

    assert "real" == package.Process()
    assert "real" == util.get_temp_dir()
    assert util._cleanup_tests() is None
    assert isinstance(sys.modules[f"{_FAKE}.process"]._dangling, weakref.WeakSet)
    assert f"{_FAKE}.heap" in sys.modules
    supplied = "\n".join(standins.supplied())
    assert f"{_FAKE}.heap: " in supplied
    assert f"{_FAKE}.util.get_temp_dir" not in supplied


def test_placeholders_fail_when_used(standins: types.ModuleType) -> None:
    """A missing documented name can be referred to, subclassed, registered; not used."""
    package = sys.modules[_FAKE]
    managers = importlib.import_module(f"{_FAKE}.managers")

    class MyManager(managers.BaseManager):  # type: ignore[name-defined,misc]
        pass

    MyManager.register("Foo", callable=dict)
    with pytest.raises(NotImplementedError, match=rf"{_FAKE}\.managers\.BaseManager is missing"):
        MyManager()
    with pytest.raises(NotImplementedError, match=rf"{_FAKE}\.Pool is missing"):
        package.Pool(2)
    with pytest.raises(AttributeError):
        package.not_a_documented_name
    wait = importlib.import_module(f"{_FAKE}.connection").wait
    assert "placeholder" in repr(wait)
    assert issubclass(package.TimeoutError, Exception)


# -- quick list -------------------------------------------------------------------------------


def test_quick_ids_round_trip(tmp_path: Path) -> None:
    """quick_expected.txt holds sorted method:Class.test ids under a comment header."""
    path = tmp_path / "quick.txt"
    _quick.write_expected(["spawn:TestWait.test_wait", "fork:TestWait.test_wait"], "polyproc",
                          path)

    assert ["fork:TestWait.test_wait", "spawn:TestWait.test_wait"] == _quick.read_expected(path)
    assert ("fork", "TestWait", "test_wait") == _quick.parse_id("fork:TestWait.test_wait")
    with pytest.raises(ValueError, match="bad test id"):
        _quick.parse_id("TestWait.test_wait")


def test_checked_in_quick_list_is_well_formed() -> None:
    """Every line of the checked-in quick list is a method:Class.test id."""
    for test_id in _quick.read_expected():
        method, cls, name = _quick.parse_id(test_id)
        assert method in ("fork", "spawn", "forkserver")
        assert cls in _quick.QUICK_CLASSES
        assert f"{cls}.{name}" not in _quick.EXCLUDED
