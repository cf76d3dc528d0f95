"""The polyproc command: --help, info, and the seed tour."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._support import START_METHODS


def _polyproc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polyproc", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_the_commands():
    """--help names every subcommand."""
    result = _polyproc("--help")
    assert 0 == result.returncode
    assert "demo" in result.stdout and "info" in result.stdout


def test_info():
    """info prints the start methods."""
    result = _polyproc("info")
    assert 0 == result.returncode
    assert "forkserver" in result.stdout


@pytest.mark.parametrize("method", START_METHODS)
def test_demo_runs_the_seed_tour(method):
    """The tour's examples succeed and show what the article shows."""
    result = _polyproc("demo", "--start-method", method)
    assert 0 == result.returncode, result.stderr
    out = result.stdout
    assert "hello bob" in out
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in out  # threads share one list
    for i in range(10):
        assert f"\n[{i}]\n" in out  # each process has its own
    assert "the parent's list is still []" in out
    for i in range(10):
        assert f"[{i}, 'hello']" in out  # the Queue example
        assert f"hello world {i}\n" in out  # the Lock example
    assert "3.1415927 [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]" in out  # Value and Array
    assert "[1, 4, 9]\n" in out  # Pool(5).map
    assert "{1: '1', '2': 2, 0.25: None}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n" in out  # Manager
    assert f"{[i * i for i in range(10)]}\n" in out  # apply_async(...).get(timeout=10)
    assert "3 -> lost:" in out and "the pool goes on: [16, 25]" in out  # a killed worker
    assert "sum of squares: 2664667000 (expected 2664667000 )" in out  # progress example
    assert "2000 tasks done, 0 failed" in out
    assert "2000/2000" in result.stderr  # the progress bar drew its last state
    assert "the map job behaved as expected" in out  # polyproc map, the main job
    assert "20000 items, 4 failed" in result.stderr
