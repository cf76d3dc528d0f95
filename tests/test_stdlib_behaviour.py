"""Observable behaviour that must be the standard library's, under every start method.

Each test runs a small program (tests/_behaviour_workers.py) in a fresh interpreter, with
polyproc and, where the output is deterministic, with the standard library too, and
compares: pool worker names, Process reprs, the order of buffered output around
``start()``, the records of multiprocessing's logger, a silent exit, and a parent that
exits right after starting a child.
"""

from __future__ import annotations

import collections
import pathlib
import re
import subprocess
import sys

import pytest

from tests._support import START_METHODS

SCRIPT = pathlib.Path(__file__).with_name("_behaviour_workers.py")
ROOT = SCRIPT.parent.parent
TIMEOUT = 50.0


def run(scenario: str, module: str, method: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a scenario of tests/_behaviour_workers.py with *module* as multiprocessing."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), scenario, module, method, *args],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
    )


def both(scenario: str, method: str, *args: str) -> tuple[str, str]:
    """The stdout of *scenario* under the standard library and under polyproc."""
    expected = run(scenario, "multiprocessing", method, *args)
    got = run(scenario, "polyproc", method, *args)
    assert got.returncode == expected.returncode == 0, got.stderr
    return expected.stdout, got.stdout


@pytest.mark.parametrize("method", START_METHODS)
def test_pool_worker_names_are_the_stdlib_ones(method: str) -> None:
    """ForkPoolWorker-N (SpawnPoolWorker-N, ForkServerPoolWorker-N), N from the counter."""
    expected, got = both("names", method)
    assert expected == got
    prefix = {"fork": "Fork", "spawn": "Spawn", "forkserver": "ForkServer"}[method]
    assert got.splitlines()[:2] == [
        f"{prefix}Process-1", f"['{prefix}PoolWorker-2', '{prefix}PoolWorker-3']"
    ]
    assert got.splitlines()[-1] == f"{prefix}PoolWorker-5"


@pytest.mark.parametrize("method", START_METHODS)
def test_process_repr_is_the_stdlib_one(method: str) -> None:
    """Every state of the repr, exitcode=-SIGTERM included, and the child's own view."""
    expected, got = both("reprs", method)
    assert expected == got
    assert "stopped exitcode=-SIGTERM daemon>" in got
    assert "stopped exitcode=-SIGKILL>" in got


@pytest.mark.parametrize("method", START_METHODS)
def test_std_streams_are_flushed_before_a_child_starts(method: str) -> None:
    """Block-buffered text printed before start() comes out once, before the child's."""
    expected, got = both("flush", method)
    assert expected == got == (
        "out-before;parent-0;child-0;parent-1;child-1;parent-end\n"
    )
    assert run("flush", "polyproc", method).stderr == "err-before;"


# The stdlib's records that come from machinery polyproc does not have (handler threads,
# named semaphores re-opened by each child, the fork server's socket directory), and
# those whose presence depends on timing even in the stdlib.
_NOT_COMPARED = re.compile(
    r"(created semlock|recreated blocker|worker handler|task handler|result handler"
    r"|ensuring that outqueue|created temp directory|cleaning up worker"
    r"|calling join\(\) for process the-daemon)"
)
_RECORD = re.compile(r"^\[([^/\]]+)/([^\]]+)\] (.*)$")


def _records(stderr: str) -> dict[str, list[str]]:
    """Log records by process name, in order, with their level; variable parts masked."""
    by_process: dict[str, list[str]] = collections.defaultdict(list)
    for line in stderr.splitlines():
        match = _RECORD.match(line)
        if match is None or _NOT_COMPARED.search(match[3]):
            continue
        message = re.sub(r"after \d+ tasks", "after N tasks", match[3])
        by_process[match[2]].append(f"{match[1]} {message}")
    # The worker of the pool that is terminated: what it logs after it started depends
    # on whether SIGTERM or the stdlib's sentinel reaches it first.
    workers = [name for name in by_process if "PoolWorker-" in name]
    last = max(workers, key=lambda name: int(name.rsplit("-", 1)[1]))
    del by_process[last][1:]
    return dict(by_process)


@pytest.mark.parametrize("method", START_METHODS)
def test_util_log_records_are_the_stdlib_ones(method: str) -> None:
    """log_to_stderr(DEBUG): the same records, per process and in the same order."""
    expected = run("logs", "multiprocessing", method, "10")
    got = run("logs", "polyproc", method, "10")
    assert got.returncode == expected.returncode == 0, got.stderr
    assert got.stdout == expected.stdout == "end\n"
    wanted = _records(expected.stderr)
    assert _records(got.stderr) == wanted
    main = wanted["MainProcess"]
    assert "DEBUG joining pool workers" in main
    assert "INFO calling terminate() for daemon the-daemon" in main
    assert "INFO calling join() for process the-waiter" in main
    assert wanted["the-waiter"][-1] == "INFO process exiting with exitcode 0"


def test_logger_is_multiprocessing_s() -> None:
    """The logger is named 'multiprocessing'; SUBDEBUG records show as 'Level 5'."""
    code = (
        "import polyproc, polyproc.util as u\n"
        "logger = polyproc.log_to_stderr(u.SUBDEBUG)\n"
        "print(logger.name, logger.propagate, u._log_to_stderr, u._logger is logger)\n"
        "u.sub_debug('hello %s', 'there')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True)
    assert out.stdout == "multiprocessing False True True\n"
    assert out.stderr.splitlines() == [
        "[Level 5/MainProcess] hello there",
        "[INFO/MainProcess] process shutting down",
        '[DEBUG/MainProcess] running all "atexit" finalizers with priority >= 0',
        '[DEBUG/MainProcess] running the remaining "atexit" finalizers',
    ]


@pytest.mark.parametrize("method", START_METHODS)
def test_a_child_imports_logging_only_if_its_parent_logs(
    method: str, tmp_path: pathlib.Path
) -> None:
    """Logging costs a spawned child nothing unless the parent configured it."""
    code = (
        "import sys, polyproc\n"
        "def child(): print('logging' in sys.modules, flush=True)\n"
        "if __name__ == '__main__':\n"
        "    ctx = polyproc.get_context(sys.argv[1])\n"
        "    for configure in (False, True):\n"
        "        if configure: polyproc.log_to_stderr(30)\n"
        "        p = ctx.Process(target=child); p.start(); p.join()\n"
    )
    script = tmp_path / "log_import.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script), method], capture_output=True,
                         text=True, timeout=TIMEOUT, check=True)
    assert out.stdout == "False\nTrue\n"


@pytest.mark.parametrize("method", START_METHODS)
def test_exit_without_join_or_close_is_silent(method: str) -> None:
    """Processes, pools, queues and pipes never joined or closed: nothing on stderr."""
    out = run("noise", "polyproc", method)
    assert (out.returncode, out.stdout, out.stderr) == (0, "end\n", "")


@pytest.mark.parametrize("how", ["return", "_exit"])
@pytest.mark.parametrize("daemon", ["plain", "daemon"])
@pytest.mark.parametrize("method", START_METHODS)
def test_parent_exits_right_after_start(method: str, daemon: str, how: str) -> None:
    """The child runs (joined at exit) or is terminated; never a payload traceback."""
    out = run("quick_exit", "polyproc", method, daemon, how)
    assert (out.returncode, out.stderr) == (0, "")
    if daemon == "plain" and how == "return":
        assert out.stdout == f"child ran {1 << 20}\n"


@pytest.mark.parametrize("how", ["return", "_exit"])
@pytest.mark.parametrize("daemon", ["plain", "daemon"])
@pytest.mark.parametrize("method", START_METHODS)
def test_exit_while_another_thread_starts_children(method: str, daemon: str, how: str) -> None:
    """A start under way in a thread when the program exits: no child reads a truncated
    payload (the exit waits for the start; after os._exit the child leaves quietly)."""
    out = run("exit_while_starting", "polyproc", method, daemon, how)
    assert out.stdout == "parent exits\n"
    assert out.returncode == 0
    assert out.stderr == ""
