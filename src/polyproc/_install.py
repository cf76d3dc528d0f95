"""``polyproc.install()``: make polyproc *be* ``multiprocessing`` for a whole program.

After :func:`install`, ``import multiprocessing`` and ``import multiprocessing.X`` give
polyproc and ``polyproc.X``, so code nobody here wrote (``concurrent.futures``' process
pool, libraries built on multiprocessing) runs on polyproc unchanged.

How it reaches every process of the program:

* the current process: ``sys.modules`` gets ``multiprocessing`` and the submodules
  already loaded; a finder on ``sys.meta_path`` answers for the others on first import;
* forked children inherit ``sys.modules`` as it is;
* spawned children, the fork server and manager servers are fresh interpreters: they
  import polyproc before anything else, and polyproc's ``__init__`` installs itself when
  the environment variable :data:`ENV_VAR` is set, which :func:`install` sets.

Modules that imported the standard library's multiprocessing *before* :func:`install`
keep a reference to it; :func:`install` warns about them, and ``polyproc run`` avoids the
problem by installing before the program starts.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

__all__ = ["ENV_VAR", "install", "installed"]

ENV_VAR = "POLYPROC_AS_MULTIPROCESSING"
"""Set to ``"1"`` by :func:`install`; polyproc installs itself at import when it is set."""

_ALIAS = "multiprocessing"
_TARGET = "polyproc"


class _AliasLoader(importlib.abc.Loader):
    """Loads ``multiprocessing.X`` by importing ``polyproc.X`` and handing that module out."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._original_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._original_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set __spec__ to the alias's spec; the module keeps its
        # own identity (pickling, reloading and tracebacks name polyproc.X).
        module.__spec__ = self._original_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers for ``multiprocessing.*`` with the polyproc module of the same name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(_ALIAS + "."):
            return None
        polyproc_name = _TARGET + fullname[len(_ALIAS) :]
        try:
            found = importlib.util.find_spec(polyproc_name)
        except ImportError:
            found = None
        if found is None:
            return None  # ModuleNotFoundError names multiprocessing.X, as it should
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(polyproc_name), is_package=found.submodule_search_locations
            is not None
        )


_finder = _AliasFinder()


def installed() -> bool:
    """Whether ``import multiprocessing`` gives polyproc in this process."""
    return sys.modules.get(_ALIAS) is sys.modules.get(_TARGET) is not None


def install(*, children: bool = True) -> None:
    """Make ``multiprocessing`` (and each ``multiprocessing.X``) be polyproc from now on.

    With *children* true (the default) every process the program starts, by any start
    method, installs it too. Calling it again does nothing.

    Warns:
        RuntimeWarning: the standard library's multiprocessing was imported before; the
            modules that hold it (named in the warning) keep using it.
    """
    import polyproc

    if children:
        os.environ[ENV_VAR] = "1"
    if installed():
        return
    previous = sys.modules.get(_ALIAS)
    if previous is not None:
        holders = sorted(
            name
            for name, module in list(sys.modules.items())
            if module is not None
            and not name.startswith((_ALIAS, _TARGET))
            and any(value is previous for value in list(vars(module).values()))
        )
        warnings.warn(
            "polyproc.install() after the standard library's multiprocessing was imported: "
            f"{', '.join(holders) or 'no module'} keep(s) the standard library's. Call "
            "install() first, or start the program with `polyproc run`.",
            RuntimeWarning,
            stacklevel=2,
        )
        for name in [n for n in sys.modules if n == _ALIAS or n.startswith(_ALIAS + ".")]:
            del sys.modules[name]
    sys.modules[_ALIAS] = polyproc
    for name, module in list(sys.modules.items()):
        if name.startswith(_TARGET + ".") and module is not None:
            alias = _ALIAS + name[len(_TARGET) :]
            if not alias.split(".")[1].startswith("_"):
                sys.modules[alias] = module
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
