"""Stand-ins for what CPython's multiprocessing suite needs from a package that it lacks.

This file runs *inside* the test processes: the harness copies it next to the rewritten suite as
``_compat_standins.py`` and the suite's first line calls :func:`install`. It therefore imports
only the standard library (never ``multiprocessing``) and reads its settings from
``_compat_config.json`` beside it (written by :mod:`tests.compat._suite`).

Two kinds of stand-ins, each supplied only when the package lacks the name:

* **Private stand-ins** (:data:`PRIVATE_ATTRIBUTES`, :data:`PRIVATE_MODULES`): the private names
  that the suite's module-level code and per-test set-up/tear-down touch on *every* test
  (``process._cleanup``, ``process._dangling``, ``util._cleanup_tests``, ``util.get_temp_dir``,
  the modules ``heap``, ``resource_tracker`` ...). Without them every test would error,
  whatever the package does. They are minimal: a no-op, an empty ``WeakSet``, a temp dir.
* **Placeholders** for *documented* names or modules that are missing (a package still being
  written may have no ``managers`` yet). The suite refers to many of them when it is imported
  (``class MyManager(BaseManager)``, ``Pool = staticmethod(multiprocessing.Pool)``), so without
  them no test could run at all. A placeholder is a class whose instantiation raises
  ``NotImplementedError("... missing ... (harness placeholder)")``, so every test that really
  uses it fails, and says why.

:func:`supplied` lists what was supplied in this process; the harness prints it.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import sys
import tempfile
import types
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["guard_setup_module", "install", "supplied"]

CONFIG_FILE = "_compat_config.json"

#: Submodules the suite imports at module level; a missing one breaks the whole suite. (The
#: ones it imports under ``try/except ImportError`` follow below.)
SUITE_MODULES: tuple[str, ...] = (
    "connection", "dummy", "heap", "managers", "pool", "queues", "util", "process",
    "resource_tracker",
)


def _noop(*args: object, **kwargs: object) -> None:
    return None


_temp_dir: str | None = None


def _get_temp_dir() -> str:
    """A per-process temporary directory, removed at exit (as util.get_temp_dir)."""
    global _temp_dir
    if _temp_dir is None:
        _temp_dir = tempfile.mkdtemp(prefix="pymp-")
        atexit.register(shutil.rmtree, _temp_dir, ignore_errors=True)
    return _temp_dir


#: (submodule, attribute) -> (factory of the value, what the suite does with it).
PRIVATE_ATTRIBUTES: dict[tuple[str, str], tuple[Callable[[], object], str]] = {
    ("process", "_cleanup"): (
        lambda: _noop, "no-op; setUpModule() calls it to reap finished children"),
    ("process", "_dangling"): (
        weakref.WeakSet, "empty WeakSet; set-up/tear-down diff it to report dangling processes"),
    ("util", "_cleanup_tests"): (
        lambda: _noop, "no-op; tearDownModule() calls it to stop helper processes"),
    ("util", "get_temp_dir"): (
        lambda: _get_temp_dir, "tempfile.mkdtemp() once per process; setUpModule() calls it"),
    ("util", "SUBWARNING"): (
        lambda: 25, "25; the suite's LOG_LEVEL constant, read at import"),
    ("util", "SUBDEBUG"): (lambda: 5, "5; the logging level next to SUBWARNING"),
    ("util", "abstract_sockets_supported"): (
        lambda: sys.platform == "linux",
        "True on Linux; read at import by a skip decorator of _TestListener"),
    ("reduction", "HAVE_SEND_HANDLE"): (
        lambda: False, "False; the suite reads it at import if the module exists"),
}

#: Documented submodules that the suite imports under ``try/except ImportError``. Left missing,
#: their tests would be *skipped*; a placeholder makes them *fail* instead, because a missing
#: documented module is a gap in the compatibility figure, not a platform limitation.
DOCUMENTED_OPTIONAL_MODULES: tuple[str, ...] = ("sharedctypes", "shared_memory")

#: Private submodules that the suite imports under ``try/except ImportError``: nothing is
#: supplied when they are missing (their tests are private anyway), but when they exist their
#: stand-in attributes must be there before the suite reads them at import.
OPTIONAL_MODULES: tuple[str, ...] = ("reduction",)

#: Private submodules supplied as (nearly) empty modules when missing, and why.
PRIVATE_MODULES: dict[str, str] = {
    "heap": "empty module; imported by the suite at module level",
    "util": "module holding the util stand-ins; imported by the suite at module level",
    "process": "module holding the process stand-ins; setUpModule() uses process._cleanup",
    "resource_tracker": "empty module; imported by the suite at module level (POSIX)",
}

_supplied: dict[str, str] = {}
_installed = False


def supplied() -> list[str]:
    """Return ``"name: what"`` for every stand-in or placeholder supplied so far, sorted."""
    return [f"{name}: {what}" for name, what in sorted(_supplied.items())]


class _PlaceholderMeta(type):
    """Metaclass whose classes answer any public attribute with a failing placeholder."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}", cls.__module__)

    def __repr__(cls) -> str:
        return f"<harness placeholder for {cls.__module__}.{cls.__qualname__}>"


class _Placeholder(metaclass=_PlaceholderMeta):
    """Base of placeholders: creating one fails, naming what is missing."""

    def __new__(cls, *args: object, **kwargs: object) -> _Placeholder:
        # Name the missing class itself, also when the suite instantiates a subclass of it
        # (class MyManager(BaseManager)).
        missing = next(k for k in cls.__mro__ if vars(k).get("_compat_placeholder"))
        raise NotImplementedError(
            f"{missing.__module__}.{missing.__qualname__} is missing (harness placeholder)")

    @classmethod
    def register(cls, *args: object, **kwargs: object) -> None:
        """BaseManager.register(): the suite calls it at import on its manager subclasses."""


class _PlaceholderError(Exception):
    """Base of placeholders for exception classes, so that ``except`` clauses stay valid."""


def _placeholder(qualname: str, module: str) -> type:
    name = qualname.rpartition(".")[2]
    base: type = _PlaceholderError if name.endswith("Error") or name == "BufferTooShort" \
        else _Placeholder
    namespace = {"__module__": module, "__qualname__": qualname, "_compat_placeholder": True}
    if base is _PlaceholderError:
        return type(name, (base,), namespace)
    return _PlaceholderMeta(name, (base,), namespace)


def _hook_getattr(module: types.ModuleType, documented: frozenset[str]) -> None:
    """Make *module* answer missing documented names with placeholders (PEP 562 hook).

    A module's own ``__getattr__`` (lazy imports) is asked first.
    """
    previous = module.__dict__.get("__getattr__")
    cache: dict[str, object] = {}

    def __getattr__(name: str) -> object:
        if previous is not None:
            try:
                return previous(name)
            except AttributeError:
                pass
        if name not in documented:
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        if name not in cache:
            full = f"{module.__name__}.{name}"
            if _is_namespace(_documented_key(full)):
                # ``from package import submodule`` asks hasattr() before importing: answer
                # with the real submodule when there is one.
                submodule, why = _import_submodule(full)
                if submodule is not None:
                    return submodule
                cache[name] = _placeholder_module(full)
                if why != "missing":
                    _supplied[full] += f" ({why})"
            else:
                cache[name] = _placeholder(name, module.__name__)
                _supplied[full] = "placeholder (missing documented name)"
        return cache[name]

    module.__getattr__ = __getattr__  # type: ignore[method-assign]


_config_cache: dict[str, Any] = {}


def _config() -> dict[str, Any]:
    if not _config_cache:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_FILE)
        with open(path, encoding="utf-8") as f:
            _config_cache.update(json.load(f))
    return _config_cache


def _documented_key(module_name: str) -> str:
    """Translate ``polyproc.dummy`` into the documentation's ``multiprocessing.dummy``."""
    return "multiprocessing" + module_name[len(_config()["target"]):]


def _is_namespace(key: str) -> bool:
    return key in _config()["documented"]


def _documented_names(module_name: str) -> frozenset[str]:
    return frozenset(_config()["documented"].get(_documented_key(module_name), ()))


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "harness placeholder for a missing documented module")
    _hook_getattr(module, _documented_names(name))
    _register_module(name, module)
    _supplied[name] = "placeholder module (missing documented module)"
    return module


def _register_module(name: str, module: types.ModuleType) -> None:
    sys.modules[name] = module
    parent_name, _, child = name.rpartition(".")
    parent = sys.modules.get(parent_name)
    if parent is not None:
        setattr(parent, child, module)


def _import_submodule(name: str) -> tuple[types.ModuleType | None, str | None]:
    """Import *name*; return (module, None), or (None, why) when it is missing or broken."""
    try:
        return importlib.import_module(name), None
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None, "missing"
        return None, f"import failed: {type(exc).__name__}: {exc}"
    except Exception as exc:
        return None, f"import failed: {type(exc).__name__}: {exc}"


def _semlock_check() -> None:
    """test.support.skip_if_broken_multiprocessing_synchronize(), without multiprocessing.

    The original imports the standard library's ``multiprocessing.synchronize`` to create a
    lock; this creates the same POSIX semaphore through the C module directly.
    """
    import unittest

    from test.support.import_helper import import_module  # type: ignore[import-not-found]

    semlock = import_module("_multiprocessing").SemLock
    if sys.platform == "linux":
        try:
            semlock(1, 1, 1, f"/compat-check-{os.getpid()}", True)
        except OSError as exc:
            raise unittest.SkipTest(f"broken multiprocessing SemLock: {exc!r}") from exc


def _replace_synchronize_check() -> None:
    """Keep the standard library's multiprocessing out of the test processes.

    The suite's first call, ``support.skip_if_broken_multiprocessing_synchronize()``, imports
    it; with it loaded, the harness could not tell whether the package under test imports it.
    """
    from test import support  # type: ignore[import-not-found]

    support.skip_if_broken_multiprocessing_synchronize = _semlock_check
    _supplied["test.support.skip_if_broken_multiprocessing_synchronize"] = (
        "same semaphore check through _multiprocessing.SemLock, so that the test process "
        "does not import the standard library's multiprocessing")


def guard_setup_module(setup: Callable[[], None]) -> Callable[[], None]:
    """Wrap the suite's ``setUpModule`` so that a missing ``RLock`` does not fail every test.

    ``setUpModule`` creates an ``RLock`` only to check that the platform can; a package that
    has no ``RLock`` yet (a placeholder) gets a no-op for the duration of that check. Tests
    that use ``RLock`` still meet the placeholder and fail.
    """
    def setUpModule() -> None:
        package = sys.modules[_config()["target"]]
        rlock = getattr(package, "RLock", None)
        if not isinstance(rlock, _PlaceholderMeta):
            setup()
            return
        _supplied[f"{package.__name__}.RLock (in setUpModule)"] = (
            "no-op for the platform check of setUpModule only; tests still get the placeholder")
        package.RLock = _noop  # type: ignore[attr-defined]
        try:
            setup()
        finally:
            del package.RLock

    return setUpModule


def install() -> None:
    """Supply the stand-ins the package configured in ``_compat_config.json`` lacks.

    Idempotent; safe to call in every process that imports the suite.
    """
    global _installed
    if _installed:
        return
    _installed = True
    cfg = _config()
    target = cfg["target"]
    package = importlib.import_module(target)
    _hook_getattr(package, _documented_names(target))
    if target != "multiprocessing":
        _replace_synchronize_check()
    for sub in (*SUITE_MODULES, *DOCUMENTED_OPTIONAL_MODULES):
        name = f"{target}.{sub}"
        module, why = _import_submodule(name)
        if module is None:
            if sub in PRIVATE_MODULES:
                module = types.ModuleType(name, "harness stand-in")
                _hook_getattr(module, _documented_names(name))
                _register_module(name, module)
                _supplied[name] = PRIVATE_MODULES[sub]
            else:
                module = _placeholder_module(name)
            if why != "missing":
                _supplied[name] += f" ({why})"
        elif _is_namespace(_documented_key(name)):
            _hook_getattr(module, _documented_names(name))
    for sub in OPTIONAL_MODULES:
        _import_submodule(f"{target}.{sub}")
    for (sub, attr), (factory, what) in PRIVATE_ATTRIBUTES.items():
        module = sys.modules.get(f"{target}.{sub}")
        if module is not None and not hasattr(module, attr):
            setattr(module, attr, factory())
            _supplied[f"{target}.{sub}.{attr}"] = what
