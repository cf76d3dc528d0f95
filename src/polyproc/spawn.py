"""Starting fresh interpreters, as in :mod:`multiprocessing.spawn`.

The executable polyproc's spawn start method (and the fork server) runs, the command line
of a spawned child, and the *preparation data* that makes a fresh interpreter look like
its parent (``sys.path``, ``sys.argv``, working directory, the main module re-imported as
``__mp_main__``). The work is done by :mod:`polyproc._process._prepare` and
:mod:`polyproc._process._launch`; this module is their stdlib-shaped face.

Preparation data is a dict with polyproc's keys (``name``, ``sys_path``, ``sys_argv``,
``dir``, ``main_path`` or ``main_name``, ``authkey``, ``start_method``); :func:`prepare`
also accepts the standard library's ``init_main_from_path`` and ``init_main_from_name``.
"""

from __future__ import annotations

import os
import sys
import types

from ._os._spawn import interpreter_flags
from ._process import _prepare, _spawn_main
from ._process._launch import SPAWN_ENTRY
from ._process._process import _BOOTSTRAP_ERROR
from ._process._state import runtime

# typing costs a spawned child ~8 ms to import; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = [
    "WINEXE",
    "WINSERVICE",
    "freeze_support",
    "get_command_line",
    "get_executable",
    "get_preparation_data",
    "import_main_path",
    "is_forking",
    "prepare",
    "set_executable",
    "spawn_main",
]

# Windows-only notions of the standard library; polyproc runs on Linux.
WINEXE = False
WINSERVICE = False

FORK_FLAG = "--multiprocessing-fork"

# The positional arguments of polyproc's spawn entry point (_spawn_main.main), in order.
_ENTRY_ARGS = ("payload_fd", "report_fd", "parent_handle", "fds", "main_thread")

# Main modules replaced by prepare(), kept alive as the standard library keeps them: their
# functions may still be referenced.
old_main_modules: list[types.ModuleType] = []


def get_executable() -> str:
    """The Python interpreter that spawn and the fork server start (a path, as ``str``)."""
    return runtime.executable


def set_executable(exe: str | bytes | os.PathLike[str] | None) -> None:
    """Make spawn and the fork server start *exe*; ``None`` restores ``sys.executable``.

    Takes effect for the next spawned child or fork server.
    """
    runtime.executable = sys.executable if exe is None else os.fsdecode(exe)


def get_command_line(**kwds: Any) -> list[str]:
    """The command line polyproc's spawn launcher runs for a child.

    Without arguments, the prefix (interpreter, its flags, the entry point); with the
    entry point's arguments as keywords (``payload_fd``, ``report_fd``, ``parent_handle``,
    ``fds``: a sequence of descriptors, ``main_thread``: a bool), the whole command line.
    A frozen executable gets ``[executable, '--multiprocessing-fork', 'name=value'...]``,
    which :func:`freeze_support` understands.

    Raises:
        TypeError: an unknown keyword.
    """
    unknown = set(kwds) - set(_ENTRY_ARGS)
    if unknown:
        raise TypeError(f"get_command_line() got unexpected keywords {sorted(unknown)}")
    if getattr(sys, "frozen", False):
        return [sys.executable, FORK_FLAG, *(f"{k}={_encode(kwds[k])}" for k in _ENTRY_ARGS
                                               if k in kwds)]
    prefix = [get_executable(), *interpreter_flags(), "-c", SPAWN_ENTRY]
    if not kwds:
        return prefix
    return [*prefix, *_entry_argv(**kwds)]


def _entry_argv(
    payload_fd: int,
    report_fd: int,
    parent_handle: int,
    fds: Any = (),
    main_thread: bool = True,
) -> list[str]:
    # What SpawnLauncher passes after the entry point; _spawn_main.main parses it.
    if isinstance(fds, str):
        fds = [int(fd) for fd in fds.split(",") if fd]
    return [
        str(payload_fd),
        str(report_fd),
        str(parent_handle),
        ",".join(str(fd) for fd in fds),
        "main-thread" if main_thread else "thread",
    ]


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def is_forking(argv: list[str]) -> bool:
    """Whether *argv* is the command line of a frozen executable started as a child."""
    return len(argv) >= 2 and argv[1] == FORK_FLAG


def freeze_support() -> None:
    """In a frozen executable started as a child, run the child and exit; else do nothing.

    Raises:
        SystemExit: always, when this process is such a child (with the child's exit code).
    """
    if not is_forking(sys.argv):
        return
    kwds: dict[str, Any] = {}
    for arg in sys.argv[2:]:
        name, _, value = arg.partition("=")
        kwds[name] = None if value == "None" else value
    spawn_main(**kwds)


def spawn_main(
    pipe_handle: int | None = None,
    parent_pid: int | None = None,
    tracker_fd: int | None = None,
    **kwds: Any,
) -> NoReturn:
    """Run the child process described by polyproc's entry-point arguments, then exit.

    Takes the keywords of :func:`get_command_line` (``payload_fd``, ``report_fd``,
    ``parent_handle``, ``fds``, ``main_thread``), as ints or their string forms.

    Raises:
        RuntimeError: called with the standard library's arguments (*pipe_handle*,
            *parent_pid*, *tracker_fd*) or without polyproc's: polyproc's children are
            started only by its own launcher, whose protocol differs.
        SystemExit: with the child's exit code, once it has run.
    """
    missing = [k for k in ("payload_fd", "report_fd", "parent_handle") if kwds.get(k) is None]
    if pipe_handle is not None or parent_pid is not None or tracker_fd is not None or missing:
        raise RuntimeError(
            "spawn_main() cannot apply: polyproc starts spawned children with its own "
            "protocol (payload_fd=, report_fd=, parent_handle=, fds=, main_thread=); "
            "the standard library's pipe_handle/parent_pid/tracker_fd protocol is not "
            "supported" + (f" (missing {', '.join(missing)})" if missing else "")
        )
    main_thread = kwds.get("main_thread", True)
    if isinstance(main_thread, str):
        main_thread = main_thread not in ("0", "False", "thread")
    argv = _entry_argv(
        int(kwds["payload_fd"]),
        int(kwds["report_fd"]),
        int(kwds["parent_handle"]),
        kwds.get("fds") or (),
        bool(main_thread),
    )
    sys.argv[1:] = argv
    _spawn_main.main()
    raise SystemExit(0)  # pragma: no cover - main() always exits


def get_preparation_data(name: str) -> dict[str, Any]:
    """What a fresh interpreter needs to look like this process; *name* is the child's name.

    Raises:
        RuntimeError: called while this process is itself importing its parent's main
            module (a script without the ``if __name__ == '__main__':`` guard).
    """
    if runtime.bootstrapping:
        raise RuntimeError(_BOOTSTRAP_ERROR)
    data = _prepare.collect(types.SimpleNamespace(name=name))
    data["authkey"] = bytes(runtime.current.authkey)
    data["start_method"] = runtime.start_method
    return data


def prepare(data: dict[str, Any]) -> None:
    """Make this process look like the one that produced *data* (see the module docstring).

    Each key is optional. The main module is imported as ``__mp_main__`` (and aliased as
    ``__main__``) unless it already is this process's main module.

    Raises:
        Exception: whatever importing the main module raises.
    """
    data = dict(data)
    if "init_main_from_name" in data:
        data.setdefault("main_name", data.pop("init_main_from_name"))
    if "init_main_from_path" in data:
        data.setdefault("main_path", data.pop("init_main_from_path"))
    if "authkey" in data:
        runtime.current.authkey = data["authkey"]
    if data.get("start_method") is not None:
        runtime.start_method = data["start_method"]
    main = sys.modules.get("__main__")
    if data.get("main_name") is not None and (
        getattr(getattr(main, "__spec__", None), "name", None) == data["main_name"]
    ):
        del data["main_name"]
    if data.get("main_path") is not None and _is_current_main(data["main_path"]):
        del data["main_path"]
    if ("main_name" in data or "main_path" in data) and main is not None:
        old_main_modules.append(main)
    data.setdefault("name", runtime.current.name)
    data.setdefault("sys_path", sys.path)
    data.setdefault("sys_argv", sys.argv)
    data.setdefault("dir", None)
    _prepare.apply(data)


def import_main_path(main_path: str) -> None:
    """Run the script *main_path* as ``__mp_main__``, aliased as ``__main__``.

    Does nothing if it already is this process's main module.

    Raises:
        Exception: whatever running the script raises.
    """
    if _is_current_main(main_path):
        return
    main = sys.modules.get("__main__")
    if main is not None:
        old_main_modules.append(main)
    _prepare.import_main_path(os.path.abspath(main_path))


def _is_current_main(main_path: str) -> bool:
    current = getattr(sys.modules.get("__main__"), "__file__", None)
    return current is not None and os.path.abspath(current) == os.path.abspath(main_path)
