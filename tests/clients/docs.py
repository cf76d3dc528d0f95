"""Client (a): the example programs of the documentation's multiprocessing page.

Where they come from: Debian's ``python3.11-doc`` package (fetched with ``apt-get
download`` at test time, never copied into the repository), which holds the page's source
``_sources/library/multiprocessing.rst.txt`` and the rendered ``library/multiprocessing.html``.
The package has no ``Doc/includes/`` folder, so the three ``literalinclude`` programs
(``mp_newtype.py``, ``mp_pool.py``, ``mp_workers.py``) are read from the rendered page:
the code blocks of its "Examples" section, in the order the source includes them.

Which blocks are examples (the rule):

1. a literal block of the source (after ``::`` or a ``code-block``/``testcode``
   directive), not an interactive session (``>>>``), with a top-level
   ``if __name__ == '__main__':`` line: a complete program by the page's own convention;
2. and the three included programs above;
3. minus blocks that are not valid Python (pseudo-code such as ``... do something using
   "lock" ...``), and blocks whose comments say they deadlock (the page shows what not to
   do: ``p.join()  # this deadlocks``). None of the remaining examples needs input or a
   network or runs forever (the manager server examples that ``serve_forever()`` have no
   ``__main__`` block, so rule 1 leaves them out).

How an example passes: ``python example.py`` exits 0 with no traceback on stderr (a
traceback printed by a child process counts), within 60 s; an example whose comment says
``# raises NAME`` instead must end with that exception. Its output, normalised (lines
sorted; PIDs, pool worker numbers and timing dots blanked), must equal the standard
library's. Each example runs with its own start method if it picks one, else three times:
as it is (the platform default, fork) and with ``set_start_method('spawn' |
'forkserver')`` called first by a runner in ``plugin/`` (``--quick``: fork and spawn).
"""

from __future__ import annotations

import ast
import html.parser
import re
import subprocess
import tempfile
import time
from pathlib import Path

from . import _fetch
from ._harness import PLUGIN_DIR, Result, Run, command, environment

PACKAGE = "python3.11-doc"
_DOC = "usr/share/doc/python3.11/html"
_RST = f"{_DOC}/_sources/library/multiprocessing.rst.txt"
_HTML = f"{_DOC}/library/multiprocessing.html"
METHODS = ("fork", "spawn", "forkserver")
QUICK_METHODS = ("fork", "spawn")  # --quick: as the reader runs it, and the pickling one
TIMEOUT = 60.0

_MAIN_GUARD = re.compile(r"^if __name__ == ['\"]__main__['\"]\s*:", re.M)
_DIRECTIVE = re.compile(r"\s*\.\. (code-block|testcode|sourcecode|code)::")
_OTHER_DIRECTIVE = re.compile(r"\s*\.\. [\w:-]+::")
_INCLUDE = re.compile(r"^\.\. literalinclude:: \.\./includes/(\S+)", re.M)
_PICKS_METHOD = re.compile(r"(?:set_start_method|get_context)\(\s*['\"](\w+)['\"]")
_RAISES = re.compile(r"#\s*raises\s+([\w.]+)")


def literal_blocks(rst: str) -> list[tuple[int, str]]:
    """The literal blocks of an rst text: (first line number, dedented text)."""
    lines = rst.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        directive = _DIRECTIVE.match(line)
        # "text::" opens a literal block; other directives ("..  note::") do not.
        opens = directive or (line.endswith("::") and not _OTHER_DIRECTIVE.match(line))
        if not opens:
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        while j < len(lines) and (
            not lines[j].strip() or (directive and lines[j].strip().startswith(":"))
        ):
            j += 1
        if j == len(lines) or len(lines[j]) - len(lines[j].lstrip()) <= indent:
            i += 1
            continue
        body_indent = len(lines[j]) - len(lines[j].lstrip())
        k = j
        while k < len(lines) and (
            not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) >= body_indent
        ):
            k += 1
        body = [text[body_indent:] for text in lines[j:k]]
        blocks.append((j + 1, "\n".join(body).strip("\n") + "\n"))
        i = k
    return blocks


class _Examples(html.parser.HTMLParser):
    """Collects the text of the ``<pre>`` blocks inside ``<section id="examples">``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str | None] = []
        self.pre: list[str] | None = None
        self.blocks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self.sections.append(dict(attrs).get("id"))
        elif tag == "pre" and "examples" in self.sections:
            self.pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.sections.pop()
        elif tag == "pre" and self.pre is not None:
            self.blocks.append("".join(self.pre))
            self.pre = None

    def handle_data(self, data: str) -> None:
        if self.pre is not None:
            self.pre.append(data)


def extract(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(examples by name, excluded blocks by name -> reason) from an unpacked doc package."""
    rst = (root / _RST).read_text(encoding="utf-8")
    examples: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for line, text in literal_blocks(rst):
        if text.lstrip().startswith(">>>") or not _MAIN_GUARD.search(text):
            continue
        name = f"multiprocessing.rst:{line}"
        try:
            ast.parse(text)
        except SyntaxError:
            excluded[name] = "not valid Python: pseudo-code"
            continue
        if re.search(r"#.*\b(deadlocks?|hangs?)\b", text):
            excluded[name] = "shows a deadlock on purpose (its comment says so)"
            continue
        examples[name] = text
    parser = _Examples()
    parser.feed((root / _HTML).read_text(encoding="utf-8"))
    included = _INCLUDE.findall(rst)
    if len(included) != len(parser.blocks):
        raise RuntimeError(
            f"{len(included)} literalinclude(s) in the source but {len(parser.blocks)} code "
            "blocks in the rendered Examples section: the extraction rule needs a look")
    examples.update(zip(included, (block.rstrip() + "\n" for block in parser.blocks),
                        strict=True))
    return examples, excluded


def normalise(output: str) -> str:
    """Output reduced to what does not change from run to run: sorted lines (processes
    print in any order), PIDs and pool worker numbers blanked (the standard library's
    worker naming is kept, so a different naming scheme still shows), and the dots the
    pool example prints while it waits removed."""
    lines = []
    for raw in output.splitlines():
        line = re.sub(r"(PoolWorker|Process)-\d+(:\d+)*", r"\1-N", raw)
        line = re.sub(r"\b\d{3,}\b", "N", line)
        lines.append(re.sub(r"[\s.]+$", "", line))
    return "\n".join(sorted(filter(None, lines)))


class DocsExamples:
    """The documentation's example programs, each run as its own process."""

    name = "docs-examples"

    def __init__(self) -> None:
        self.examples: dict[str, str] = {}
        self.excluded: dict[str, str] = {}
        self.folder: Path | None = None
        self.source = ""

    def prepare(self) -> None:
        """Fetch the documentation package and write the examples into the cache."""
        root = _fetch.debian_package(PACKAGE)
        self.source = (root / "FETCHED_FROM").read_text().strip()
        self.examples, self.excluded = extract(root)
        self.folder = _fetch.CACHE / "docs-examples"
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.examples.items():
            path = self.folder / _file_name(name)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)

    def test_ids(self, quick: bool) -> list[str]:
        ids = []
        for name, text in self.examples.items():
            picked = _PICKS_METHOD.search(text)
            methods = QUICK_METHODS if quick else METHODS
            for method in [picked.group(1)] if picked else methods:
                ids.append(f"{name}[{method}]")
        return ids

    def variant(self, test_id: str) -> str:
        return test_id.rsplit("[", 1)[1].rstrip("]")

    def run(self, implementation: str, *, quick: bool, log: Path,
            only: list[str] | None = None) -> Run:
        assert self.folder is not None, "prepare() first"
        run = Run()
        started = time.monotonic()
        for test_id in only if only is not None else self.test_ids(quick):
            name, method = test_id[:-1].rsplit("[", 1)
            run.results[test_id] = self._run_one(implementation, name, method, log)
        run.seconds = time.monotonic() - started
        return run

    def _run_one(self, implementation: str, name: str, method: str, log: Path) -> Result:
        assert self.folder is not None
        text = self.examples[name]
        program = str(self.folder / _file_name(name))
        if _PICKS_METHOD.search(text) or method == "fork":
            target = [program]  # as the reader would run it
        else:
            target = [str(PLUGIN_DIR / "polyproc_clients_start_method.py"), method, program]
        with tempfile.TemporaryDirectory(prefix="polyproc-docs-") as cwd:
            try:
                done = subprocess.run(
                    command(implementation, target), cwd=cwd, capture_output=True,
                    text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                    env=environment(implementation, []),
                )
            except subprocess.TimeoutExpired as exc:
                _log(log, implementation, name, method, "timed out", exc.stdout, exc.stderr)
                return Result("failed", f"no exit after {TIMEOUT:.0f} s")
        _log(log, implementation, name, method, f"exit {done.returncode}", done.stdout,
             done.stderr)
        last = (done.stderr.strip().splitlines() or [""])[-1]
        expected = _RAISES.search(text)
        if expected:
            wanted = expected.group(1).rsplit(".", 1)[-1]
            raised = last.split(":", 1)[0].rsplit(".", 1)[-1]
            ok = done.returncode != 0 and raised == wanted
            message = "" if ok else f"expected {wanted}, got exit {done.returncode}: {last}"
        else:
            ok = done.returncode == 0 and "Traceback" not in done.stderr
            message = "" if ok else f"exit {done.returncode}: {last[:300]}"
        return Result("passed" if ok else "failed", message, normalise(done.stdout))


def _file_name(name: str) -> str:
    """multiprocessing.rst:34 -> multiprocessing_rst_34.py; mp_pool.py stays."""
    return name if name.endswith(".py") else re.sub(r"\W", "_", name) + ".py"


def _log(log: Path, implementation: str, name: str, method: str, status: str,
         stdout: str | bytes | None, stderr: str | bytes | None) -> None:
    def text(value: str | bytes | None) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else value or ""

    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n=== {name} [{method}] on {implementation}: {status}\n")
        out.write(text(stdout) + text(stderr))
