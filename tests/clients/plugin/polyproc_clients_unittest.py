"""Run a unittest module and report each test as it finishes, as the pytest plugin beside
this file does (same JSON lines, same environment variables).

Usage: ``python polyproc_clients_unittest.py MODULE [CLASS_REGEX]``; the harness starts it
as ``python SCRIPT ...`` or ``python -m polyproc run SCRIPT ...``, so the module under test
is imported by a plain ``__main__`` in both cases.

A test that runs longer than ``POLYPROC_CLIENTS_TEST_TIMEOUT`` seconds makes faulthandler
print every thread's stack and end the process: unittest has no per-test time-out, and a
hung test would otherwise cost the whole run. The harness starts a new run for the tests
after it.

``POLYPROC_CLIENTS_STANDINS`` may name private test helpers of ``multiprocessing``
(``util._cleanup_tests``) to supply as no-ops *when the running multiprocessing lacks
them*: CPython's suites call such a helper from ``setUpModule``, and without it not one
test would run, whatever the package does. Each one supplied is reported (a ``standin``
line), and the harness prints it: the lack stays visible.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import re
import sys
import unittest

_REPORT = os.environ.get("POLYPROC_CLIENTS_REPORT")
_ONLY = os.environ.get("POLYPROC_CLIENTS_ONLY")
_TIMEOUT = float(os.environ.get("POLYPROC_CLIENTS_TEST_TIMEOUT", "120"))


def _emit(**event: object) -> None:
    if not _REPORT:
        return
    with open(_REPORT, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    tests: list[unittest.TestCase] = []
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            tests.extend(_flatten(test))
        else:
            tests.append(test)
    return tests


def _last_line(err: tuple[type[BaseException], BaseException, object]) -> str:
    return f"{err[0].__name__}: {err[1]}".splitlines()[0][:300]


class _Result(unittest.TextTestResult):
    """Emits one ``start`` and one ``end`` line per test; the first failure wins."""

    def startTest(self, test: unittest.TestCase) -> None:
        self._outcome_of = ("passed", "")
        _emit(event="start", id=test.id())
        faulthandler.dump_traceback_later(_TIMEOUT, exit=True)
        super().startTest(test)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        faulthandler.cancel_dump_traceback_later()
        outcome, message = self._outcome_of
        _emit(event="end", id=test.id(), outcome=outcome, message=message)

    def _set(self, outcome: str, message: str) -> None:
        if self._outcome_of[0] != "failed":
            self._outcome_of = (outcome, message)

    def addError(self, test, err):  # type: ignore[no-untyped-def]
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._set("failed", _last_line(err))
        else:  # setUpModule / setUpClass: unittest reports it on a stand-in
            _emit(event="fixture-error", id=str(test), message=_last_line(err))

    def addFailure(self, test, err):  # type: ignore[no-untyped-def]
        super().addFailure(test, err)
        self._set("failed", _last_line(err))

    def addSubTest(self, test, subtest, err):  # type: ignore[no-untyped-def]
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._set("failed", f"{subtest._subDescription()} {_last_line(err)}")

    def addSkip(self, test, reason):  # type: ignore[no-untyped-def]
        super().addSkip(test, reason)
        self._set("skipped", reason)

    def addExpectedFailure(self, test, err):  # type: ignore[no-untyped-def]
        super().addExpectedFailure(test, err)
        self._set("skipped", "expected failure")

    def addUnexpectedSuccess(self, test):  # type: ignore[no-untyped-def]
        super().addUnexpectedSuccess(test)
        self._set("failed", "unexpected success")


def _supply_standins(names: str) -> None:
    """Give the running multiprocessing a no-op for each missing ``submodule.name``."""
    for dotted in filter(None, names.split(",")):
        submodule, attribute = dotted.rsplit(".", 1)
        target = importlib.import_module(f"multiprocessing.{submodule}")
        if not hasattr(target, attribute):
            setattr(target, attribute, lambda *args, **kwargs: None)
            _emit(event="standin", name=f"multiprocessing.{dotted}")


def main(argv: list[str]) -> int:
    module_name = argv[0]
    class_filter = re.compile(argv[1]) if len(argv) > 1 else None
    module = sys.modules.get("multiprocessing")
    if module is None:
        import multiprocessing as module
    _emit(event="meta", multiprocessing=module.__name__)
    _supply_standins(os.environ.get("POLYPROC_CLIENTS_STANDINS", ""))
    tests = _flatten(unittest.defaultTestLoader.loadTestsFromModule(
        importlib.import_module(module_name)))
    if class_filter is not None:
        tests = [t for t in tests if class_filter.search(type(t).__name__)]
    if _ONLY:
        with open(_ONLY, encoding="utf-8") as keep_file:
            keep = set(keep_file.read().split("\n"))
        tests = [t for t in tests if t.id() in keep]
    _emit(event="collected", ids=[t.id() for t in tests])
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result)
    result = runner.run(unittest.TestSuite(tests))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
