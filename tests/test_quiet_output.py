"""A green run is a quiet run: intended crashes in tests print no fatal errors or stacks."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_intentional_segfault_test_prints_no_fatal_error() -> None:
    """The pool's segfault test, run with output not captured (-s), as CI shows it."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         os.path.join(HERE, "test_pool.py"), "-k", "segfault"],
        capture_output=True, text=True, timeout=120, cwd=os.path.dirname(HERE), check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout
    assert "Fatal Python error" not in done.stdout + done.stderr
    assert "Segmentation fault" not in done.stdout + done.stderr
