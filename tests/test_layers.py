"""The ground rules of the design, checked: no stdlib multiprocessing, layers import down."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import polyproc
from polyproc._layers import LAYERS, layer_of

PACKAGE = pathlib.Path(polyproc.__file__).parent
README = PACKAGE.parent.parent / "README.md"

FORBIDDEN = ("multiprocessing", "concurrent.futures.process")


def _layer_of(module: str) -> int:
    try:
        return layer_of(module)
    except LookupError as exc:
        raise AssertionError(str(exc)) from None


def _constant_prefix(node: ast.expr) -> str | None:
    """The text of a string constant, or the constant start of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def _imports(path: pathlib.Path, source: str | None = None):
    """(line, imported module, names) of every import in *path* (a file of the package);
    *source* replaces the file's text (to check the checker)."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    package_parts = path.relative_to(PACKAGE).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or "", None
            else:
                base = list(package_parts[: len(package_parts) - node.level])
                if path.name == "__init__.py":
                    base = list(package_parts[: len(package_parts) - node.level + 1])[:-1] or base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                names = [a.name for a in node.names] if not node.module else None
                yield node.lineno, "polyproc." + target if target else "polyproc", names
        elif isinstance(node, ast.Call) and node.args:
            # importlib.import_module("polyproc.x") and __import__("polyproc.x"): a
            # dynamic import is still an import.
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                text = _constant_prefix(node.args[0])
                if text and text.startswith("polyproc."):
                    yield node.lineno, text.rstrip("."), None


def test_no_forbidden_imports_in_the_source():
    """No module of polyproc imports multiprocessing or the futures process pool."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for lineno, module, _ in _imports(path):
            if module in FORBIDDEN or module.startswith(tuple(f + "." for f in FORBIDDEN)):
                offenders.append(f"{path.relative_to(PACKAGE)}:{lineno} imports {module}")
    assert [] == offenders


def test_no_forbidden_imports_at_run_time():
    """Using polyproc, even starting processes, never loads the stdlib's multiprocessing."""
    code = (
        "import sys, polyproc\n"
        "for m in polyproc.get_all_start_methods():\n"
        "    p = polyproc.get_context(m).Process(target=print, args=())\n"
        "    p.start(); p.join(30)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'multiprocessing'"
        " or m == 'concurrent.futures.process']\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == out.stdout.strip().splitlines()[-1]


def test_layers_import_down():
    """Each module imports only its own layer or lower ones (see LAYERS)."""
    violations = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        own = _layer_of(".".join(rel.parts))
        for lineno, module, names in _imports(path):
            if not module.startswith("polyproc"):
                continue
            targets = [module] if names is None else [f"{module}.{n}" for n in names]
            for target in targets:
                inner = target[len("polyproc.") :] if target != "polyproc" else "__init__"
                if not inner:
                    continue
                if _layer_of(inner) > own:
                    violations.append(f"{'.'.join(rel.parts)}:{lineno} imports {target}")
    assert [] == violations


def test_private_modules_are_underscored():
    """Internals live in _-prefixed modules; public modules are the stdlib-shaped facade."""
    public = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    for name in public:
        if not name.startswith("_"):
            assert name in LAYERS[-2].names or name == "exceptions", name


def test_dynamic_imports_are_checked_too() -> None:
    """The checker sees importlib.import_module and __import__ of a constant name."""
    source = ("import importlib\nimportlib.import_module('polyproc.pool')\n"
              "__import__(f'polyproc.managers.{name}')\nimportlib.import_module(name)\n")
    found = [name for _, name, _ in _imports(PACKAGE / "_wire" / "probe.py", source)]
    assert ["importlib", "polyproc.pool", "polyproc.managers"] == found


def test_the_readme_layout_table_is_the_layer_map() -> None:
    """The README's table of the layout is generated from polyproc._layers."""
    from polyproc._layers import markdown_table

    assert markdown_table() in README.read_text(encoding="utf-8")
