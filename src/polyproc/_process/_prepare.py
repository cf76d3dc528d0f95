"""Preparation data: what a spawned interpreter needs to look like its parent.

The parent collects it with :func:`collect`; the child applies it with :func:`apply`
before it unpickles the process object, because that object's target may live in the
parent's main module, which the child must first import (as ``__mp_main__``).
"""

from __future__ import annotations

import os
import sys
import types

from ._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["apply", "collect", "import_main_path"]


def collect(process: Any) -> dict[str, Any]:
    """The parent's side: sys.path, argv, directories, and how to re-import ``__main__``."""
    data: dict[str, Any] = {
        "name": process.name,
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "dir": os.getcwd(),
    }

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        # Run with -m: re-import by name, unless it is a package's __main__.
        if spec.name != "__main__" and not spec.name.endswith(".__main__"):
            data["main_name"] = spec.name
    elif (main_file := getattr(main, "__file__", None)) is not None:
        main_path = os.path.abspath(main_file)
        if not main_path.endswith(("<stdin>", "<string>")):
            data["main_path"] = main_path
    return data


def apply(data: dict[str, Any]) -> None:
    """The child's side: become like the parent, importing its main module as __mp_main__.

    While the main module is imported, ``runtime.bootstrapping`` is true, so a script
    without the ``__main__`` guard gets a clear error instead of starting processes.
    """
    sys.path[:] = data["sys_path"]
    sys.argv[:] = data["sys_argv"]
    if data.get("dir"):
        try:
            os.chdir(data["dir"])
        except OSError:
            pass
    runtime.current._name = data["name"]

    runtime.bootstrapping = True
    try:
        if "main_name" in data:
            import runpy  # spawned children only

            namespace = runpy.run_module(data["main_name"], run_name="__mp_main__", alter_sys=True)
            _import_main(namespace)
        elif "main_path" in data:
            import_main_path(data["main_path"])
    finally:
        runtime.bootstrapping = False


def import_main_path(main_path: str) -> None:
    """Run the script *main_path* as module ``__mp_main__`` and alias it as ``__main__``.

    A plain ``.py`` file is compiled and executed directly; anything else (a directory or
    zip file with a ``__main__.py``) goes through ``runpy``, whose import costs a spawned
    child about 4 ms.
    """
    if main_path.endswith(".py") and os.path.isfile(main_path):
        module = types.ModuleType("__mp_main__")
        module.__file__ = main_path
        module.__package__ = ""
        with open(main_path, "rb") as source:
            code = compile(source.read(), main_path, "exec")
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module
        exec(code, module.__dict__)
        return
    import runpy

    _import_main(runpy.run_path(main_path, run_name="__mp_main__"), main_path)


def _import_main(namespace: dict[str, Any], path: str | None = None) -> None:
    module = types.ModuleType("__mp_main__")
    module.__dict__.update(namespace)
    if path is not None:
        module.__file__ = path
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module
