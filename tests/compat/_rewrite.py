"""Token-level rewriting of CPython's multiprocessing suite so that it imports another package.

The suite is never edited in place and never copied into the repository: :mod:`._suite` copies
it into a temporary directory at run time and passes its text through these functions.

What is rewritten, and why only that:

* ``NAME`` tokens spelled ``multiprocessing`` (``import multiprocessing.connection``,
  ``multiprocessing.Process``, ``from multiprocessing import util``) become the target package.
  A ``NAME`` after a ``.`` is an attribute of something else and is left alone, as are
  ``_multiprocessing`` (the C accelerator, a different token) and ``test.support``.
* Inside string literals, only references to the *package*:

  - a literal that is nothing but a dotted module path (``mock.patch`` targets such as
    ``'multiprocessing.shared_memory._make_filename'``, module lists for ``import *`` tests);
  - Python source run by a child (``-c`` scripts, files written by a test), recognised by an
    ``import multiprocessing`` / ``from multiprocessing`` line; every whole-word
    ``multiprocessing`` in it refers to the package;
  - the expression parts of f-strings (``f"{multiprocessing.active_children()}"``).

  Message texts (``'unclosed running multiprocessing pool'``, skip reasons) are prose, and some
  are compared word for word by the tests, so they stay as they are.
* Self-references of the suite (``from test._test_multiprocessing import ...`` run by a child
  with ``-E -S``, ``test.mp_preload`` imported by ``mp_preload.py``, the forkserver preload
  list) are pointed at the temporary copy; see :func:`rewrite_suite` and
  :func:`rewrite_preload_script`.

Every function keeps the number of lines unchanged where it matters (the suite), so tracebacks
from the copy carry the same line numbers as the installed file.
"""

from __future__ import annotations

import io
import re
import tokenize

__all__ = [
    "PATH_ENV",
    "rewrite_package_refs",
    "rewrite_preload_script",
    "rewrite_string_literal",
    "rewrite_suite",
]

#: Package name used by the suite.
SOURCE_PACKAGE = "multiprocessing"

#: Environment variable holding the directories (os.pathsep-separated) that a child started with
#: ``-E -S`` must put on ``sys.path`` to import the suite copy and the package under test.
PATH_ENV = "POLYPROC_COMPAT_PATH"

#: Module name of the suite copy in the temporary directory (the file keeps its name, because a
#: test looks for "test_multiprocessing.py" in a child's traceback).
SUITE_MODULE = "_test_multiprocessing"

#: Module that installs the stand-ins (written next to the suite copy by :mod:`._suite`).
STANDINS_MODULE = "_compat_standins"

#: The generated runner module for the forkserver start method; the suite preloads it in the
#: fork server, as CPython's suite preloads ``test.test_multiprocessing_forkserver``.
FORKSERVER_RUNNER = "_compat_run_forkserver"

_STRING_RE = re.compile(r"(?P<prefix>[A-Za-z]*)(?P<quote>'''|\"\"\"|'|\")(?P<body>.*)(?P=quote)\Z",
                        re.DOTALL)
_DOTTED_PATH_RE = re.compile(r"multiprocessing(?:\.[A-Za-z_]\w*)*\.?\Z")
_CODE_IMPORT_RE = re.compile(r"^\s*(?:import|from)\s+multiprocessing\b", re.MULTILINE)
_WORD_RE = re.compile(r"(?<![\w.])multiprocessing\b")


def _replace_words(text: str, target: str) -> str:
    """Replace every whole-word, non-attribute ``multiprocessing`` in *text* by *target*."""
    return _WORD_RE.sub(target, text)


def _rewrite_fstring_body(body: str, target: str) -> str:
    """Rewrite package references inside the ``{...}`` replacement fields of an f-string body."""
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch == "{" and body.startswith("{{", i):
            out.append("{{")
            i += 2
            continue
        if ch != "{":
            out.append(ch)
            i += 1
            continue
        depth = 0
        j = i
        while j < n:
            if body[j] == "{":
                depth += 1
            elif body[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        out.append(_replace_words(body[i:j + 1], target))
        i = j + 1
    return "".join(out)


def rewrite_string_literal(token: str, target: str) -> str:
    """Return the source of string literal *token* with its package references rewritten.

    Only references to the package change (see the module docstring); prose is returned as is.
    Bytes literals are never changed.
    """
    match = _STRING_RE.match(token)
    if match is None or "multiprocessing" not in match["body"]:
        return token
    prefix, quote, body = match["prefix"], match["quote"], match["body"]
    lowered = prefix.lower()
    if "b" in lowered:
        return token
    if "f" in lowered:
        new_body = _rewrite_fstring_body(body, target)
    elif _DOTTED_PATH_RE.match(body):
        new_body = target + body[len(SOURCE_PACKAGE):]
    elif _CODE_IMPORT_RE.search(body):
        new_body = _replace_words(body, target)
    else:
        return token
    return f"{prefix}{quote}{new_body}{quote}"


def _path_prologue(quote: str) -> str:
    """Code putting the directories of :data:`PATH_ENV` first on ``sys.path``.

    It uses whichever quote character does not close the literal it is embedded in.
    """
    q = '"' if "'" in quote else "'"
    return f"import os, sys; sys.path[0:0] = os.environ[{q}{PATH_ENV}{q}].split(os.pathsep); "


def _rewrite_self_reference(token: str) -> str:
    """Point ``test._test_multiprocessing`` inside a string literal at the temporary copy."""
    match = _STRING_RE.match(token)
    if match is None:
        return token
    prefix, quote, body = match["prefix"], match["quote"], match["body"]
    if "test._test_multiprocessing" in body:
        body = body.replace("from test._test_multiprocessing import",
                            _path_prologue(quote) + f"from {SUITE_MODULE} import")
        body = body.replace("test._test_multiprocessing", SUITE_MODULE)
    elif body == "test.test_multiprocessing_forkserver":
        body = FORKSERVER_RUNNER
    else:
        return token
    return f"{prefix}{quote}{body}{quote}"


def _untokenize_in_place(source: str, edits: dict[tuple[int, int], tuple[tuple[int, int], str]],
                         ) -> str:
    """Apply *edits* ``{start: (end, new_text)}`` given as (row, col) token positions."""
    lines = source.splitlines(keepends=True)
    # Apply from the end so that earlier positions stay valid.
    for (srow, scol), ((erow, ecol), text) in sorted(edits.items(), reverse=True):
        head = lines[srow - 1][:scol]
        tail = lines[erow - 1][ecol:]
        lines[srow - 1:erow] = [head + text + tail]
        # A multi-line token collapses into one list element; later (earlier-positioned) edits
        # only touch rows before srow, so indices stay valid.
    return "".join(lines)


def rewrite_package_refs(source: str, target: str, *, self_refs: bool = False) -> str:
    """Rewrite references to the ``multiprocessing`` package in Python *source* to *target*.

    Args:
        source: Python source text.
        target: name of the package to import instead (``polyproc``). When it is
            ``multiprocessing`` the package references are left as they are.
        self_refs: also point the suite's references to itself at the temporary copy.

    Returns:
        The rewritten source; its number of lines is unchanged.
    """
    edits: dict[tuple[int, int], tuple[tuple[int, int], str]] = {}
    prev: tokenize.TokenInfo | None = None
    rename = target != SOURCE_PACKAGE
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        new = tok.string
        if tok.type == tokenize.NAME and tok.string == SOURCE_PACKAGE and rename:
            after_dot = prev is not None and prev.type == tokenize.OP and prev.string == "."
            if not after_dot:
                new = target
        elif tok.type == tokenize.STRING:
            if rename:
                new = rewrite_string_literal(new, target)
            if self_refs:
                new = _rewrite_self_reference(new)
        if new != tok.string:
            edits[tok.start] = (tok.end, new)
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            prev = tok
    return _untokenize_in_place(source, edits)


def _first_import_line(source: str) -> int:
    """Return the 1-based number of the first line starting with a top-level import statement."""
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and tok.string in ("import", "from") and tok.start[1] == 0:
            return tok.start[0]
    raise ValueError("no top-level import statement found")


def rewrite_suite(source: str, target: str, *, install_standins: bool = True) -> str:
    """Rewrite the text of ``test/_test_multiprocessing.py`` for *target*.

    Besides :func:`rewrite_package_refs` (with self-references), this puts
    ``import _compat_standins; _compat_standins.install()`` in front of the first top-level
    import, on the same line, so that every process importing the copy (the test process,
    spawned children, the fork server, a child started with ``-E -S``) gets the stand-ins
    before the suite touches the package.
    """
    text = rewrite_package_refs(source, target, self_refs=True)
    if not install_standins:
        return text
    lines = text.splitlines(keepends=True)
    row = _first_import_line(text)
    lines[row - 1] = f"import {STANDINS_MODULE}; {STANDINS_MODULE}.install(); " + lines[row - 1]
    return "".join(lines)


def rewrite_preload_script(source: str, target: str) -> str:
    """Rewrite ``test/mp_preload.py``, which a test runs with ``-I`` from the copy's directory.

    ``-I`` leaves the script's own directory off ``sys.path``, and the script imports itself as
    ``test.mp_preload``; the copy imports itself as ``mp_preload`` from its own directory.
    """
    text = rewrite_package_refs(source, target)
    text = text.replace('"test.mp_preload"', '"mp_preload"').replace(
        "'test.mp_preload'", "'mp_preload'")
    prologue = ("import os as _os, sys as _sys; "
                "_sys.path.insert(0, _os.path.dirname(_os.path.abspath(__file__))); ")
    lines = text.splitlines(keepends=True)
    row = _first_import_line(text)
    lines[row - 1] = prologue + lines[row - 1]
    return "".join(lines)
