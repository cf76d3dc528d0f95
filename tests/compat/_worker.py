"""Runs (or lists) the tests of one class of CPython's multiprocessing suite in this process.

The harness copies this file into its temporary directory as ``_compat_worker.py`` and runs it
there as a script, one process per test class (see :mod:`tests.compat._runner`), so it imports
only the standard library. It reports to a file as JSON lines, one event per line, written and
flushed as they happen, so that the parent still knows which test was running if this process
hangs and has to be killed:

* ``{"event": "list", "classes": [{"name", "tests": [{"name", "qualname"}]}]}``
* ``{"event": "start", "test": "test_x"}`` before each test;
* ``{"event": "result", "test", "outcome", "reason", "traceback", "duration"}`` after it, where
  outcome is one of pass, fail, error, skip, xfail, xpass;
* ``{"event": "fixture", "name", "outcome", "reason", "traceback"}`` for an error or skip in
  ``setUpModule``/``setUpClass``/``tearDownClass``/``tearDownModule``;
* ``{"event": "import_error", "traceback"}`` when the suite cannot even be imported;
* ``{"event": "done", "supplied": [...], "stdlib_multiprocessing": bool}`` at the end, with the
  stand-ins supplied and whether the standard library's multiprocessing got imported.

In a child process started by the spawn or forkserver method this file is imported again as
``__mp_main__``; the ``__main__`` guard keeps that free of side effects.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import signal
import sys
import time
import traceback
import types
import unittest
from typing import IO, Any

RUNNER_PREFIX = "_compat_run_"
_MAX_TRACEBACK_CHARS = 8000
_MAX_REASON_CHARS = 300

ExcInfo = tuple[type[BaseException], BaseException, types.TracebackType | None]


def one_line(exc_type: type[BaseException], exc: BaseException) -> str:
    """The first line of ``ExcType: message``, shortened to a few hundred characters."""
    text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
    first = text.splitlines()[-1] if text else exc_type.__name__
    if isinstance(exc, AssertionError):
        # Assertion messages put the useful part first; keep its first line.
        lines = str(exc).strip().splitlines()
        first = f"AssertionError: {lines[0]}" if lines else "AssertionError"
    return first[:_MAX_REASON_CHARS]


class JsonLinesResult(unittest.TestResult):
    """A unittest result that writes every outcome to *stream* as one JSON line."""

    def __init__(self, stream: IO[str]) -> None:
        """Report to *stream*, a text file opened for writing."""
        super().__init__()
        self._stream = stream
        self._started = 0.0
        self._record: dict[str, Any] = {}

    def _emit(self, **record: Any) -> None:
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()

    @staticmethod
    def _details(err: ExcInfo) -> dict[str, str]:
        text = "".join(traceback.format_exception(*err))
        return {"reason": one_line(err[0], err[1]), "traceback": text[-_MAX_TRACEBACK_CHARS:]}

    def _fixture(self, test: Any, outcome: str, **details: str) -> None:
        self._emit(event="fixture", name=str(test), outcome=outcome, **details)

    def startTest(self, test: unittest.TestCase) -> None:
        """Announce the test before it runs."""
        super().startTest(test)
        self._started = time.monotonic()
        self._record = {"outcome": None, "reason": "", "traceback": ""}
        self._emit(event="start", test=test._testMethodName)

    def stopTest(self, test: unittest.TestCase) -> None:
        """Report the outcome recorded for the test."""
        super().stopTest(test)
        record = self._record
        if record["outcome"] is None:
            record["outcome"] = "error"
            record["reason"] = record["reason"] or "no outcome reported"
        self._emit(event="result", test=test._testMethodName,
                   duration=round(time.monotonic() - self._started, 3), **record)

    def _set(self, outcome: str, **details: str) -> None:
        # A failing subtest or a tearDown error after a failure must not be overwritten by a
        # milder outcome.
        rank = {"pass": 0, "xfail": 0, "skip": 1, "xpass": 2, "fail": 3, "error": 4}
        current = self._record.get("outcome")
        if current is None or rank[outcome] >= rank[current]:
            self._record.update(outcome=outcome, **details)

    def addSuccess(self, test: unittest.TestCase) -> None:
        """Record a pass."""
        super().addSuccess(test)
        self._set("pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        """Record a failure."""
        super().addFailure(test, err)
        self._set("fail", **self._details(err))

    def addError(self, test: Any, err: Any) -> None:
        """Record an error, in a test or in a class/module fixture."""
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._set("error", **self._details(err))
        else:
            self._fixture(test, "error", **self._details(err))

    def addSkip(self, test: Any, reason: str) -> None:
        """Record a skip, of a test or of a whole class/module."""
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._set("skip", reason=reason[:_MAX_REASON_CHARS])
        else:
            self._fixture(test, "skip", reason=reason[:_MAX_REASON_CHARS])

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        """Record an expected failure."""
        super().addExpectedFailure(test, err)
        self._set("xfail")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        """Record an unexpected success (counts as a failure)."""
        super().addUnexpectedSuccess(test)
        self._set("xpass", reason="unexpected success")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        """Record a failing subtest as the failure of its test."""
        super().addSubTest(test, subtest, err)
        if err is not None:
            outcome = "fail" if issubclass(err[0], test.failureException) else "error"
            details = self._details(err)
            details["reason"] = f"{subtest._subDescription()}: {details['reason']}"
            self._set(outcome, **details)


def _supplied() -> list[str]:
    module = sys.modules.get("_compat_standins")
    return list(module.supplied()) if module is not None else []


def _import_runner(method: str, out: IO[str]) -> types.ModuleType | None:
    try:
        return importlib.import_module(RUNNER_PREFIX + method)
    except BaseException:  # the suite may raise SkipTest, or anything, at import
        out.write(json.dumps({"event": "import_error", "traceback": traceback.format_exc(),
                              "supplied": _supplied()}) + "\n")
        out.flush()
        return None


def _test_classes(module: types.ModuleType) -> list[type[unittest.TestCase]]:
    return [obj for name, obj in sorted(vars(module).items())
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
            and obj.__module__ == module.__name__]


def list_tests(method: str, out: IO[str]) -> int:
    """Write the classes and tests installed for *method*; return the exit status."""
    module = _import_runner(method, out)
    if module is None:
        return 3
    loader = unittest.TestLoader()
    classes = []
    for cls in _test_classes(module):
        tests = [{"name": name, "qualname": getattr(cls, name).__qualname__}
                 for name in loader.getTestCaseNames(cls)]
        classes.append({"name": cls.__name__, "tests": tests})
    out.write(json.dumps({"event": "list", "classes": classes, "supplied": _supplied()}) + "\n")
    return 0


def run_tests(method: str, class_name: str, tests: list[str] | None, out: IO[str]) -> int:
    """Run *tests* (default: all) of *class_name* for *method*; return the exit status."""
    module = _import_runner(method, out)
    if module is None:
        return 3
    cls = getattr(module, class_name)
    if tests:
        suite = unittest.TestSuite(cls(name) for name in tests)
    else:
        suite = unittest.TestLoader().loadTestsFromTestCase(cls)
    result = JsonLinesResult(out)
    suite(result)
    out.write(json.dumps({"event": "done", "supplied": _supplied(),
                          "stdlib_multiprocessing": "multiprocessing" in sys.modules}) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``list --method M --out F`` or ``run --method M --cls C --out F``."""
    parser = argparse.ArgumentParser(prog="_compat_worker")
    parser.add_argument("mode", choices=("list", "run"))
    parser.add_argument("--method", required=True)
    parser.add_argument("--cls")
    parser.add_argument("--tests", default="")
    parser.add_argument("--out", required=True)
    parser.add_argument("--watchdog", type=float, default=0.0,
                        help="dump all thread stacks to stderr after this many seconds")
    args = parser.parse_args(argv)
    # A shell runs background jobs with SIGINT ignored, and Python keeps an ignored SIGINT;
    # tests that interrupt themselves with SIGINT expect KeyboardInterrupt, as under regrtest.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.enable()
    if args.watchdog > 0:
        faulthandler.dump_traceback_later(args.watchdog, exit=False)
    with open(args.out, "a", encoding="utf-8") as out:
        if args.mode == "list":
            return list_tests(args.method, out)
        tests = [t for t in args.tests.split(",") if t]
        return run_tests(args.method, args.cls, tests or None, out)


if __name__ == "__main__":
    sys.exit(main())
