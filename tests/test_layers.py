"""The ground rules of the design, checked: no stdlib multiprocessing, layers import down."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import polyproc

PACKAGE = pathlib.Path(polyproc.__file__).parent

# Lower index = lower layer. A module may import its own layer or any lower one.
LAYERS = [
    {"exceptions"},  # leaf
    {"_os"},  # operating-system primitives
    {"_wire"},  # transport and serialization
    {"_process"},  # processes
    {"_shared"},  # sync, shared memory, queues
    {"_pool", "_managers"},  # pool and managers
    {"_backends"},  # local and Dask engines
    {"util", "context", "process", "connection", "__init__", "synchronize", "sharedctypes",
     "shared_memory", "queues", "pool", "managers", "dummy", "reduction", "resource_tracker",
     "resource_sharer", "spawn", "forkserver", "heap", "popen_fork", "popen_spawn_posix",
     "popen_forkserver", "_install"},  # the stdlib-shaped facade, and install()
    {"_cli", "__main__"},  # the command line
]
FORBIDDEN = ("multiprocessing", "concurrent.futures.process")


def _layer_of(module: str) -> int:
    top = module.split(".", 1)[0]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"module {module!r} belongs to no layer: add it to LAYERS")


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
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
            assert name in LAYERS[7] or name == "exceptions", name
