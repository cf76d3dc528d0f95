"""Clients (b) and (c): published test suites, run unchanged by their own runner.

(b) Libraries built on multiprocessing, their test suites taken from their PyPI source
distributions at a pinned version, run with pytest from the unpacked sdist (the library is
imported from there through ``PYTHONPATH``: both are pure Python, so nothing is installed
into the venv and pyproject.toml needs no new dependency).

* pebble: process pools with time-outs and the ``concurrent.process`` decorator; its
  suite has one file per start method (``test_*_fork.py``, ``_forkserver``, ``_spawn``).
* tqdm: the progress bar's lock is a ``multiprocessing.RLock``, ``process_map`` uses
  ``concurrent.futures.ProcessPoolExecutor``. Run as its own tox file does (``-k "not
  perf"``), without ``tests_asyncio.py``, which needs pytest-asyncio and no process.
* aiomultiprocess: asyncio on processes (its own context, spawn by default; a Manager,
  queues). Its unittest suite ships inside the package (``aiomultiprocess.tests``) and
  runs through the reporting unittest runner.

(c) ``concurrent.futures.ProcessPoolExecutor``: CPython's ``test_concurrent_futures``.
This interpreter's ``test`` package ships without it, so it comes from Debian's
``libpython3.11-testsuite`` (CPython 3.11.2's file; it runs on this 3.11.7 with the
interpreter's own ``test.support``). It runs under unittest through the reporting runner
in ``plugin/``; its classes are named per start method (``ProcessPoolForkWaitTest``, ...).
Its ``setUpModule`` needs the private ``multiprocessing.util._cleanup_tests``: where the
running multiprocessing lacks it the runner supplies a no-op, and the report notes it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from . import _fetch
from ._harness import PLUGIN_DIR, Run, run_reporting_suite

_METHOD_IN_FILE = re.compile(r"_(fork|forkserver|spawn)\.py::")
_METHOD_IN_CLASS = re.compile(r"\.\w*?(Forkserver|Fork|Spawn)\w*\.")


class PytestSuite:
    """A library's own pytest suite from its sdist."""

    def __init__(self, name: str, version: str, paths: list[str], options: list[str],
                 quick_paths: list[str], timeout: float, deadline: float) -> None:
        self.name = name
        self.version = version
        self.paths = paths
        self.options = options
        self.quick_paths = quick_paths
        self.timeout = timeout  # per test, pytest-timeout
        self.deadline = deadline  # per run, all tests
        self.folder: Path | None = None
        self.source = f"PyPI sdist {name}=={version}"

    def prepare(self) -> None:
        self.folder = _fetch.sdist(self.name, self.version)

    def variant(self, test_id: str) -> str:
        found = _METHOD_IN_FILE.search(test_id)
        return found.group(1) if found else "-"

    def run(self, implementation: str, *, quick: bool, log: Path,
            only: list[str] | None = None) -> Run:
        assert self.folder is not None, "prepare() first"
        # The sdist's own configuration, or none: without -c, pytest would walk up from
        # the cache folder and take this repository's pyproject.toml.
        config = self.folder / "pyproject.toml"
        if "[tool.pytest" not in (config.read_text() if config.exists() else ""):
            config = _fetch.CACHE / "empty-pytest.ini"
            config.write_text("[pytest]\n")
        target = [
            "-m", "pytest", "-c", str(config), "--rootdir", str(self.folder),
            "-p", "polyproc_clients_report", "-p", "no:cacheprovider",
            "-o", "addopts=", f"--timeout={self.timeout:g}", "-q", "--tb=short",
            *self.options, *(self.quick_paths if quick else self.paths),
        ]
        return run_reporting_suite(implementation, target, cwd=self.folder,
                                   extra_path=[self.folder], deadline=self.deadline,
                                   log=log, only=only)


class UnittestSuite:
    """A library's own unittest suite from its sdist, run by the reporting runner."""

    def __init__(self, name: str, version: str, module: str, deadline: float) -> None:
        self.name = name
        self.version = version
        self.module = module
        self.deadline = deadline
        self.folder: Path | None = None
        self.source = f"PyPI sdist {name}=={version}"

    def prepare(self) -> None:
        self.folder = _fetch.sdist(self.name, self.version)

    def variant(self, test_id: str) -> str:
        return "-"

    def run(self, implementation: str, *, quick: bool, log: Path,
            only: list[str] | None = None) -> Run:
        assert self.folder is not None, "prepare() first"
        target = [str(PLUGIN_DIR / "polyproc_clients_unittest.py"), self.module]
        return run_reporting_suite(implementation, target, cwd=self.folder,
                                   extra_path=[self.folder], deadline=self.deadline,
                                   log=log, only=only)


class ConcurrentFutures:
    """CPython's test_concurrent_futures, from Debian's test-suite package."""

    name = "concurrent.futures"
    PACKAGE = "libpython3.11-testsuite"
    MODULE = "test_concurrent_futures"
    # --quick: the spawn classes of the process pool, the start method that pickles most.
    QUICK_CLASSES = r"^ProcessPoolSpawn"
    # setUpModule registers multiprocessing.util._cleanup_tests (a private helper of
    # CPython's own tests); polyproc has none, which would stop every test before it runs.
    # The runner supplies a no-op only where it is missing, and the report says so.
    STANDINS = "util._cleanup_tests"

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.source = ""

    def prepare(self) -> None:
        root = _fetch.debian_package(self.PACKAGE)
        self.source = (root / "FETCHED_FROM").read_text().strip()
        # Its own folder on PYTHONPATH, importable as a top-level module: the interpreter's
        # `test` package is left as it is.
        self.folder = _fetch.CACHE / "cpython-tests"
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = root / "usr/lib/python3.11/test" / f"{self.MODULE}.py"
        copy = self.folder / wanted.name
        if not copy.exists() or copy.read_bytes() != wanted.read_bytes():
            shutil.copyfile(wanted, copy)

    def variant(self, test_id: str) -> str:
        found = _METHOD_IN_CLASS.search(test_id)
        return found.group(1).lower() if found else "-"

    def run(self, implementation: str, *, quick: bool, log: Path,
            only: list[str] | None = None) -> Run:
        assert self.folder is not None, "prepare() first"
        target = [str(PLUGIN_DIR / "polyproc_clients_unittest.py"), self.MODULE]
        if quick:
            target.append(self.QUICK_CLASSES)
        return run_reporting_suite(implementation, target, cwd=self.folder,
                                   extra_path=[self.folder], deadline=1500.0, log=log,
                                   only=only, env={"POLYPROC_CLIENTS_STANDINS": self.STANDINS})


def pebble() -> PytestSuite:
    """pebble 5.2.3's suite: 421 tests, about 2.5 min on the standard library."""
    return PytestSuite(
        "pebble", "5.2.3", paths=["test"],
        # pytest-timeout's default method owns SIGALRM, which pebble's signal-handler
        # tests set and raise; the thread method leaves signals alone.
        options=["--timeout-method=thread"],
        # --quick: the process pool under spawn and the decorator under fork.
        quick_paths=["test/test_process_pool_spawn.py", "test/test_concurrent_process_fork.py"],
        timeout=60, deadline=1200,
    )


def tqdm() -> PytestSuite:
    """tqdm 4.70.1's suite, as its tox.ini runs it, less the asyncio tests."""
    return PytestSuite(
        "tqdm", "4.70.1", paths=["tests"],
        options=["-k", "not perf", "--ignore=tests/tests_asyncio.py", "-W", "error",
                 "-W", "ignore::pytest.PytestConfigWarning"],
        quick_paths=["tests"], timeout=30, deadline=300,
    )


def aiomultiprocess() -> UnittestSuite:
    """aiomultiprocess 0.9.1's suite: 33 tests, about 5 s."""
    return UnittestSuite("aiomultiprocess", "0.9.1", "aiomultiprocess.tests", deadline=300)
