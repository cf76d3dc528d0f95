"""Run the prepared suite: one worker process per test class, each under its own timeout.

Why one process per class: the suite's classes share module-level state (the start method, the
resource tracker, a manager per class), and a hang or a crash in one test must not cost more
than its class. A worker that exceeds its timeout is killed with its whole process group; the
test it was running is reported as ``timeout`` and, up to ``max_restarts`` times, a new worker
carries on with the tests after it. Classes run one at a time by default: two at a time on two
cores makes the suite's timing-sensitive tests flaky.

Leftover processes of a worker (children it never joined) are killed when it exits, so that
they cannot disturb the next class.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._suite import Tree, child_environment

__all__ = [
    "ClassJob", "ClassReport", "ListResult", "ProgressCallback", "TestOutcome", "list_tests",
    "run_class", "run_classes",
]

_STDERR_TAIL_CHARS = 3000
_LEFTOVER_GRACE_S = 1.0
_LIST_TIMEOUT_S = 120.0
_WATCHDOG_MARGIN_S = 5.0


@dataclass
class TestOutcome:
    """The outcome of one test under one start method."""

    method: str
    cls: str
    name: str
    outcome: str  # pass, fail, error, skip, xfail, xpass, timeout
    reason: str = ""
    traceback: str = ""
    duration: float = 0.0

    @property
    def id(self) -> str:
        """``method:Class.test``, the id used in reports and in quick_expected.txt."""
        return f"{self.method}:{self.cls}.{self.name}"


@dataclass
class ClassReport:
    """How the workers of one class went."""

    method: str
    cls: str
    status: str = "ok"  # ok, timeout, crash, hang-at-exit
    duration: float = 0.0
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    fixture_errors: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    supplied: list[str] = field(default_factory=list)
    stdlib_multiprocessing: bool = False


@dataclass
class ListResult:
    """The classes and tests installed for one start method."""

    method: str
    classes: dict[str, list[tuple[str, str]]]  # class -> [(test name, qualname)]
    supplied: list[str]
    error: str = ""


# -- process-group housekeeping ---------------------------------------------------------------

def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group *pgid*, read from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _clean_up_group(pgid: int, grace: float) -> int:
    """Give leftover processes of a finished worker *grace* seconds, then kill them.

    Returns the number of processes that had to be killed.
    """
    deadline = time.monotonic() + grace
    delay = 0.01
    members = _group_members(pgid)
    while members and time.monotonic() < deadline:
        time.sleep(delay)  # polling a deadline, not ordering events
        delay = min(delay * 2, 0.2)
        members = _group_members(pgid)
    if members:
        _kill_group(pgid)
    return len(members)


# -- running one worker -------------------------------------------------------------------------

@dataclass
class _WorkerRun:
    events: list[dict[str, Any]]
    returncode: int | None
    timed_out: bool
    stderr_tail: str
    killed_leftovers: int


def _run_worker(tree: Tree, args: list[str], log_stem: Path, timeout: float) -> _WorkerRun:
    out_path = log_stem.with_suffix(".jsonl")
    cmd = [sys.executable, str(tree.worker), *args, "--out", str(out_path),
           "--watchdog", str(max(timeout - _WATCHDOG_MARGIN_S, 1.0))]
    cwd = log_stem.with_suffix(".cwd")
    cwd.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_environment(tree), stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
        except BaseException:  # Ctrl-C: the worker is in its own session, end it too
            _kill_group(proc.pid)
            proc.wait()
            raise
        killed = _clean_up_group(proc.pid, _LEFTOVER_GRACE_S)
        if timed_out:
            killed = 0  # the group was killed with the worker; nothing was left over
    events = []
    if out_path.exists():
        for line in out_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by the kill
    err = stderr_path.read_text(encoding="utf-8", errors="replace")
    return _WorkerRun(events, None if timed_out else proc.returncode, timed_out,
                      err[-_STDERR_TAIL_CHARS:], killed)


def list_tests(tree: Tree, method: str, logs: Path) -> ListResult:
    """Ask a worker which classes and tests the suite installs for *method*."""
    run = _run_worker(tree, ["list", "--method", method], logs / f"list-{method}",
                      _LIST_TIMEOUT_S)
    for event in run.events:
        if event.get("event") == "list":
            classes = {c["name"]: [(t["name"], t["qualname"]) for t in c["tests"]]
                       for c in event["classes"]}
            return ListResult(method, classes, event.get("supplied", []))
        if event.get("event") == "import_error":
            return ListResult(method, {}, event.get("supplied", []), error=event["traceback"])
    why = "timed out" if run.timed_out else f"exited with status {run.returncode}"
    return ListResult(method, {}, [], error=f"listing worker {why}:\n{run.stderr_tail}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def run_class(tree: Tree, method: str, cls: str, tests: list[str], logs: Path, *,
              timeout: float, max_restarts: int) -> tuple[list[TestOutcome], ClassReport]:
    """Run *tests* of class *cls* under *method*, restarting after a hang or crash.

    Args:
        tests: test names in the order to run them; all of them are reported.
        timeout: seconds allowed to each worker process.
        max_restarts: how many times to start a new worker after a hang or crash.
    """
    report = ClassReport(method, cls)
    outcomes: dict[str, TestOutcome] = {}
    remaining = list(tests)
    started = time.monotonic()
    fixture_note = ""
    while remaining:
        args = ["run", "--method", method, "--cls", cls, "--tests", ",".join(remaining)]
        stem = logs / f"{method}-{cls}-{report.workers}"
        run = _run_worker(tree, args, stem, timeout)
        report.workers += 1
        report.stderr_tail = run.stderr_tail
        if run.killed_leftovers:
            report.notes.append(f"killed {run.killed_leftovers} leftover process(es)")
        current: str | None = None
        done = False
        for event in run.events:
            kind = event.get("event")
            if kind == "start":
                current = event["test"]
            elif kind == "result":
                outcomes[event["test"]] = TestOutcome(
                    method, cls, event["test"], event["outcome"], event.get("reason", ""),
                    event.get("traceback", ""), event.get("duration", 0.0))
                current = None
            elif kind == "fixture":
                text = f"{event['name']}: {event['outcome']}: {event.get('reason', '')}"
                report.fixture_errors.append(text)
                if event["outcome"] == "skip" and not fixture_note:
                    fixture_note = "skip:" + event.get("reason", "")
                elif not fixture_note.startswith("error"):
                    fixture_note = f"error:{event['name']}: {event.get('reason', '')}"
            elif kind == "import_error":
                fixture_note = "error:suite import failed: " + _last_line(event["traceback"])
            elif kind == "done":
                done = True
                report.stdlib_multiprocessing |= bool(event.get("stdlib_multiprocessing"))
            if "supplied" in event:
                report.supplied = sorted(set(report.supplied) | set(event["supplied"]))
        if done and run.timed_out:
            report.status = "hang-at-exit"
            report.notes.append(f"worker finished its tests but hung at exit; killed after "
                                f"{timeout:.0f} s")
        elif not done and (run.timed_out or run.returncode not in (0, None)):
            report.status = "timeout" if run.timed_out else "crash"
            what = (f"timed out after {timeout:.0f} s" if run.timed_out
                    else f"worker exited with status {run.returncode}")
            if current is not None:
                outcomes[current] = TestOutcome(
                    method, cls, current, "timeout" if run.timed_out else "error",
                    what, run.stderr_tail)
                report.notes.append(f"{what} in {current}")
            else:
                report.notes.append(what)
        remaining = [t for t in remaining if t not in outcomes]
        if done or current is None or report.workers > max_restarts:
            break
    for name in remaining:
        if fixture_note.startswith("skip:"):
            outcomes[name] = TestOutcome(method, cls, name, "skip", fixture_note[5:])
        else:
            reason = fixture_note[6:] if fixture_note else (
                f"not run ({report.status}: {'; '.join(report.notes)})")
            outcomes[name] = TestOutcome(method, cls, name, "error", f"not run: {reason}",
                                         report.stderr_tail)
    report.duration = round(time.monotonic() - started, 2)
    return [outcomes[name] for name in tests], report


@dataclass(frozen=True)
class ClassJob:
    """One class to run: its start method, name and tests."""

    method: str
    cls: str
    tests: tuple[str, ...]


#: Called as each class finishes.
ProgressCallback = Callable[[ClassJob, list[TestOutcome], ClassReport], None]


def run_classes(tree: Tree, jobs: Iterable[ClassJob], logs: Path, *, timeout: float,
                max_restarts: int, parallel: int = 1, progress: ProgressCallback | None = None,
                ) -> list[tuple[ClassJob, list[TestOutcome], ClassReport]]:
    """Run every job, *parallel* at a time, calling *progress* as each one finishes."""
    job_list = list(jobs)

    def one(job: ClassJob) -> tuple[ClassJob, list[TestOutcome], ClassReport]:
        outcomes, report = run_class(tree, job.method, job.cls, list(job.tests), logs,
                                     timeout=timeout, max_restarts=max_restarts)
        if progress is not None:
            progress(job, outcomes, report)
        return job, outcomes, report

    if parallel <= 1:
        return [one(job) for job in job_list]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="compat-class") as pool:
        return list(pool.map(one, job_list))
