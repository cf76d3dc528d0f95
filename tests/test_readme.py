"""The README's Python snippets are whole programs: no undefined name, and each one that
needs nothing outside this machine runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
_BLOCK = re.compile(r"(<!-- readme-test: ([^>]*?) -->\n)?( *)```python\n(.*?)\n *```", re.S)


def _blocks() -> list[tuple[int, bool, str]]:
    """(line number, runnable, code) of each ```python block of the README."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    found = []
    for match in _BLOCK.finditer(text):
        indent = len(match.group(3))
        code = "\n".join(line[indent:] for line in match.group(4).splitlines())
        runnable = not (match.group(2) or "").startswith("compile-only")
        found.append((text.count("\n", 0, match.start(4)) + 1, runnable, code + "\n"))
    return found


BLOCKS = _blocks()


def test_the_readme_has_snippets() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize(("line", "runnable", "code"), BLOCKS, ids=[f"line{b[0]}" for b in BLOCKS])
def test_snippet_has_no_undefined_name(line: int, runnable: bool, code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select",
         "F821,F822,F823", "--stdin-filename", f"README_line{line}.py", "-"],
        input=code, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("line", "code"), [(b[0], b[2]) for b in BLOCKS if b[1]],
    ids=[f"line{b[0]}" for b in BLOCKS if b[1]],
)
def test_snippet_runs(line: int, code: str, tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), f"readme_line{line}.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write(code)
    done = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
