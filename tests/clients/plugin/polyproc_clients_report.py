"""A pytest plugin that reports each test of a client's suite as it finishes.

Loaded with ``-p polyproc_clients_report`` into a client's own pytest run (this folder is
put on ``PYTHONPATH``; the module name is unusual so that it cannot shadow anything of the
client's). It appends JSON lines to the file named by ``POLYPROC_CLIENTS_REPORT``:

* ``{"event": "meta", "multiprocessing": NAME}``: which ``multiprocessing`` the run got;
* ``{"event": "collected", "ids": [...]}``: every test id, in run order;
* ``{"event": "start", "id": ID}`` and ``{"event": "end", "id": ID, "outcome": ...}``.

Lines are written and flushed one by one, so that a run killed half-way (a hang past its
time-out, a crash of the interpreter) still tells which tests finished and which one was
running: the harness then starts a new run for the rest (``POLYPROC_CLIENTS_ONLY`` names a
file of the ids to keep).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

_REPORT = os.environ.get("POLYPROC_CLIENTS_REPORT")
_ONLY = os.environ.get("POLYPROC_CLIENTS_ONLY")
# nodeid -> outcome so far, merged over the setup/call/teardown phases
_phases: dict[str, tuple[str, str]] = {}


def _emit(**event: object) -> None:
    if not _REPORT:
        return
    with open(_REPORT, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    module = sys.modules.get("multiprocessing")
    if module is None:
        import multiprocessing as module
    _emit(event="meta", multiprocessing=module.__name__)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _ONLY:
        with open(_ONLY, encoding="utf-8") as keep_file:
            keep = set(keep_file.read().split("\n"))
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid not in keep])
        items[:] = [item for item in items if item.nodeid in keep]


def pytest_collection_finish(session: pytest.Session) -> None:
    # After every plugin's modifyitems: -k and -m deselections are done.
    _emit(event="collected", ids=[item.nodeid for item in session.items])


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _emit(event="start", id=nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    previous = _phases.get(report.nodeid, ("passed", ""))
    if previous[0] == "failed":
        return
    if report.failed:
        _phases[report.nodeid] = ("failed", f"{report.when}: {_first_line(report)}")
    elif report.skipped:
        # xfail counts as skipped: the client itself expects the test not to pass.
        _phases[report.nodeid] = ("skipped", _first_line(report))
    elif report.when == "call" and previous[0] != "skipped":
        _phases[report.nodeid] = ("passed", "")


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    outcome, message = _phases.pop(nodeid, ("failed", "no report"))
    _emit(event="end", id=nodeid, outcome=outcome, message=message)


def _first_line(report: pytest.TestReport) -> str:
    """The most telling line of a failure: the exception line pytest marks with ``E``."""
    text = str(report.longrepr or "")
    if isinstance(report.longrepr, tuple):  # skips: (file, line, reason)
        return str(report.longrepr[2])[:300]
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    if errors:
        return errors[0][:300]
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:300]
