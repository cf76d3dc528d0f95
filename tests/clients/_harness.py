"""Run a client twice, on the standard library and under ``polyproc run``, and compare.

A *client* is third-party code run unchanged: a set of example programs or a test suite.
Each run gives an outcome per test id (``passed``, ``failed`` or ``skipped``); the
comparison lists the ids that pass on the standard library and not on polyproc, after a
second polyproc run of just those ids (a timing-sensitive test that fails once on a
loaded machine is reported as flaky, not as a difference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

IMPLEMENTATIONS = ("stdlib", "polyproc")
PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
_INSTALL_VAR = "POLYPROC_AS_MULTIPROCESSING"  # polyproc._install.ENV_VAR


@dataclass
class Result:
    """One test's outcome in one run."""

    outcome: str  # "passed", "failed" or "skipped"
    message: str = ""
    # What the test printed, normalised, where the client compares output too (the
    # documentation examples): a polyproc pass with other output is no pass.
    output: str | None = None


@dataclass
class Run:
    """The outcomes of one client on one implementation."""

    results: dict[str, Result] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def command(implementation: str, target: list[str]) -> list[str]:
    """The command line that runs *target* (``["script.py", ...]`` or ``["-m", "mod",
    ...]``) as ``python`` would, on *implementation*."""
    if implementation == "stdlib":
        return [sys.executable, *target]
    if implementation == "polyproc":
        return [sys.executable, "-m", "polyproc", "run", *target]
    raise ValueError(implementation)


def environment(implementation: str, extra_path: list[Path], **extra: str) -> dict[str, str]:
    """The child environment: the caller's, with *extra_path* first on PYTHONPATH and
    polyproc's install variable removed (``polyproc run`` sets it itself; a stdlib run
    started from a process that had installed polyproc must not inherit it)."""
    env = {k: v for k, v in os.environ.items() if k != _INSTALL_VAR}
    paths = [str(p) for p in extra_path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def run_reporting_suite(
    implementation: str,
    target: list[str],
    *,
    cwd: Path,
    extra_path: list[Path],
    deadline: float,
    log: Path,
    only: list[str] | None = None,
    max_restarts: int = 8,
    env: dict[str, str] | None = None,
) -> Run:
    """Run a suite that reports through the plugins in ``plugin/`` until every collected
    test has an outcome.

    A run that dies or is killed at *deadline* seconds with tests unfinished gives the one
    it was running ``failed`` (crashed or hung), and a new run takes the rest: one hung test
    costs its time-out, not the outcomes of the tests after it.
    """
    run = Run()
    started = time.monotonic()
    pending: list[str] | None = list(only) if only is not None else None
    with tempfile.TemporaryDirectory(prefix="polyproc-clients-") as tmp:
        for attempt in range(max_restarts + 1):
            report = Path(tmp) / f"report-{attempt}.jsonl"
            extra = {**(env or {}), "POLYPROC_CLIENTS_REPORT": str(report)}
            if pending is not None:
                only_file = Path(tmp) / f"only-{attempt}.txt"
                only_file.write_text("\n".join(pending))
                extra["POLYPROC_CLIENTS_ONLY"] = str(only_file)
            remaining = deadline - (time.monotonic() - started)
            if remaining <= 0:
                run.notes.append("deadline reached before every test ran")
                break
            status = _launch(
                command(implementation, target), cwd,
                environment(implementation, [PLUGIN_DIR, *extra_path], **extra),
                remaining, log,
            )
            collected, running = _read_report(report, run, implementation)
            if collected is None:
                run.notes.append(f"run {attempt} reported no test (exit status {status})")
                break
            unfinished = [i for i in collected if i not in run.results]
            if not unfinished:
                break
            if running is not None:
                run.results[running] = Result("failed", f"crashed or hung (exit {status})")
                unfinished.remove(running)
            else:  # died between tests (e.g. in a module tear-down)
                run.notes.append(f"run {attempt} ended (exit {status}) between tests")
                for test_id in unfinished:
                    run.results[test_id] = Result("failed", f"not run: exit {status}")
                break
            pending = unfinished
            if not pending:
                break
    run.seconds = time.monotonic() - started
    return run


def _launch(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float,
            log: Path) -> int | str:
    """Run *cmd*, its output appended to *log*; the process group is killed at *timeout*
    and when the run ends (a client's stray children must not outlive its run)."""
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed at deadline"
        finally:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the run's process group (the group is the run's own)."""
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_report(report: Path, run: Run, implementation: str) -> tuple[list[str] | None,
                                                                       str | None]:
    """Fold a report file into *run*; returns (collected ids, the test left running)."""
    collected: list[str] | None = None
    running: str | None = None
    if not report.exists():
        return None, None
    for line in report.read_text(encoding="utf-8").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        kind = event["event"]
        if kind == "meta":
            expected = "multiprocessing" if implementation == "stdlib" else "polyproc"
            if event["multiprocessing"] != expected:
                raise RuntimeError(
                    f"the {implementation} run got {event['multiprocessing']!r} as "
                    "multiprocessing: the harness is not testing what it says")
        elif kind == "collected":
            collected = event["ids"]
        elif kind == "start":
            running = event["id"]
        elif kind == "end":
            run.results[event["id"]] = Result(event["outcome"], event.get("message", ""))
            running = None
        elif kind == "fixture-error":
            run.notes.append(f"{event['id']}: {event['message']}")
        elif kind == "standin":
            note = f"missing {event['name']}: a no-op stand-in was supplied"
            if note not in run.notes:
                run.notes.append(note)
    return collected, running


@dataclass
class Comparison:
    """One client, one variant (start method): the two runs side by side."""

    client: str
    variant: str
    stdlib: dict[str, Result]
    polyproc: dict[str, Result]
    flaky: dict[str, str] = field(default_factory=dict)  # id -> first failure

    def passed(self, implementation: str) -> int:
        results = self.stdlib if implementation == "stdlib" else self.polyproc
        return sum(r.outcome == "passed" for r in results.values())

    def regressions(self) -> dict[str, str]:
        """Ids that pass on the standard library and not on polyproc -> why."""
        return regressions(self.stdlib, self.polyproc)


def regressions(stdlib: dict[str, Result], polyproc: dict[str, Result]) -> dict[str, str]:
    """Ids that pass on the standard library and not on polyproc -> why."""
    found = {}
    for test_id, before in sorted(stdlib.items()):
        if before.outcome != "passed":
            continue
        after = polyproc.get(test_id)
        if after is None:
            found[test_id] = "not run on polyproc"
        elif after.outcome != "passed":
            found[test_id] = f"{after.outcome}: {after.message}".rstrip(": ")
        elif before.output is not None and after.output != before.output:
            found[test_id] = "other output: " + _first_difference(before.output,
                                                                  after.output or "")
    return found


def _first_difference(expected: str, got: str) -> str:
    """The first differing line of two outputs, both sides shown."""
    for want, have in zip(expected.splitlines(), got.splitlines(), strict=False):
        if want != have:
            return f"stdlib {want!r}, polyproc {have!r}"
    return f"stdlib {len(expected.splitlines())} lines, polyproc {len(got.splitlines())}"
