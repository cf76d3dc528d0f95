"""``polyproc map``: one JSON line per input line, failures as records, and a pool that
survives its workers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests._support import SHORT_TIMEOUT


def _map(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run(
        [sys.executable, "-m", "polyproc", "map", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=SHORT_TIMEOUT * 2,
    )


def _records(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_results_in_input_order(tmp_path):
    data = tmp_path / "lines.txt"
    lines = [f"line {i}" for i in range(500)]
    data.write_text("\n".join(lines) + "\n")
    result = _map("polyproc._cli.examples:sha256", str(data), "-j", "2")
    assert result.returncode == 0, result.stderr
    records = _records(result.stdout)
    assert [r["index"] for r in records] == list(range(500))
    assert [r["result"] for r in records] == [
        hashlib.sha256(line.encode()).hexdigest() for line in lines
    ]
    assert "500 items, 0 failed" in result.stderr


def test_failures_are_records_and_the_exit_status_says_so():
    result = _map("tests._workers:shout_or_die", "-j", "2", stdin="a\nfail\nb\n")
    assert result.returncode == 1
    records = _records(result.stdout)
    assert records[0] == {"index": 0, "result": "A"}
    assert records[1]["index"] == 1 and records[1]["error"] == "ValueError: asked to fail"
    assert "Traceback" in records[1]["traceback"]
    assert records[2] == {"index": 2, "result": "B"}


@pytest.mark.parametrize("order", ["ordered", "unordered"])
def test_a_killed_worker_costs_only_its_item(order):
    lines = [f"x{i}" for i in range(200)]
    lines[77] = "kill"
    extra = ["--unordered"] if order == "unordered" else []
    result = _map("tests._workers:shout_or_die", "-j", "2", *extra, stdin="\n".join(lines))
    assert result.returncode == 1
    records = {r["index"]: r for r in _records(result.stdout)}
    assert sorted(records) == list(range(200))
    assert records[77]["error"].startswith("WorkerLostError")
    assert all(records[i]["result"] == lines[i].upper() for i in records if i != 77)


def test_timeout_kills_a_stuck_item():
    result = _map("tests._workers:shout_or_die", "-j", "2", "--timeout", "1",
                  stdin="a\nblock\nb\n")
    assert result.returncode == 1
    records = _records(result.stdout)
    assert records[1]["error"].startswith("TimeoutError: tests._workers:shout_or_die on item 1")
    assert [records[0]["result"], records[2]["result"]] == ["A", "B"]


def test_json_lines_input():
    result = _map("tests._workers:add_fields", "--json",
                  stdin='{"a": 1, "b": 2}\n{"a": 5, "b": 5}\nnot json\n')
    records = _records(result.stdout)
    assert [r.get("result") for r in records] == [3, 10, None]
    assert records[2]["error"].startswith("JSONDecodeError")


def test_bad_target_is_a_usage_error():
    result = _map("no_such_module_here:f", stdin="x\n")
    assert result.returncode == 2
    assert "No module named" in result.stderr
    assert _map("polyproc._cli.examples", stdin="x\n").returncode == 2


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_the_console_script_imports_modules_of_the_current_directory(tmp_path, method):
    """`polyproc map mod:func` finds mod.py in the current directory, as `python -m` does,
    in the workers too."""
    (tmp_path / "localjob.py").write_text("def double(line):\n    return line * 2\n")
    script = os.path.join(os.path.dirname(sys.executable), "polyproc")
    result = subprocess.run(
        [script, "map", "localjob:double", "--start-method", method, "-j", "2"],
        input="ab\ncd\n", capture_output=True, text=True, cwd=tmp_path,
        timeout=SHORT_TIMEOUT * 2,
    )
    assert result.returncode == 0, result.stderr
    assert [r["result"] for r in _records(result.stdout)] == ["abab", "cdcd"]


def test_missing_input_file_is_a_usage_error_without_traceback(tmp_path):
    result = _map("polyproc._cli.examples:sha256", str(tmp_path / "absent.txt"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "absent.txt" in result.stderr
    assert "Traceback" not in result.stderr
