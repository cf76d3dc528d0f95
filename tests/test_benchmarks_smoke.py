"""Smoke test of the benchmark runner: ``python -m benchmarks --quick`` on one fast benchmark.

It checks the harness (fresh worker subprocesses, interleaving, statistics, both reports),
not the numbers, which mean nothing at these sizes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_benchmark_prints_a_table(tmp_path: Path) -> None:
    markdown = tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "pipe-roundtrip",
         "--markdown", str(markdown)],
        check=False,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("machine: ") for line in lines), proc.stdout
    assert "pipe-roundtrip: " in proc.stdout
    assert any(line.split()[:2] == ["implementation", "median"] for line in lines if line)
    reference = [line.split() for line in lines if line.split()[:1] == ["multiprocessing"]]
    assert reference, proc.stdout
    assert reference[0][-2:] == ["1.00x", "1.00..1.00"], reference
    for label in ("polyproc", "raw os.pipe", "raw socketpair"):
        assert any(line.strip().startswith(label) for line in lines), (label, proc.stdout)
    section = markdown.read_text(encoding="utf-8")
    assert section.startswith("## Results of ")
    assert "| implementation | median | p10 | p90 |" in section
    assert "| multiprocessing |" in section


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_quick_shared_state_benchmarks_check_their_results() -> None:
    """A queue and the Value benchmark run clean: every round's count is checked exact."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--strict", "--repeats", "1",
         "--libraries", "multiprocessing,polyproc",
         "--only", "queue-2to2-small", "--only", "value-2proc-increments"],
        check=False,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "queue-2to2-small: " in proc.stdout
    assert "value-2proc-increments: " in proc.stdout
    for name in ("multiprocessing", "polyproc"):
        rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] == [name]]
        assert len(rows) == 2, (name, proc.stdout)
        assert all(row[-1][0].isdigit() for row in rows), (name, proc.stdout)
