"""``polyproc run``: run a program with polyproc installed as ``multiprocessing``.

``polyproc run script.py [ARGS]`` and ``polyproc run -m module [ARGS]`` behave like
``python script.py`` and ``python -m module`` (``sys.argv``, ``sys.path[0]``,
``__main__``), except that :func:`polyproc.install` runs first, before the program can
import anything: ``import multiprocessing`` then gives polyproc in the program and in
every process it starts.
"""

from __future__ import annotations

import os
import runpy
import sys

import polyproc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_run_command", "run_main", "run_program"]


def run_program(target: str, args: list[str], *, as_module: bool) -> None:
    """Install polyproc, then run *target* (a script path, or a module with *as_module*)
    as ``__main__`` with ``sys.argv`` set to *target* and *args*.

    Raises:
        FileNotFoundError: the script does not exist.
        ImportError: the module cannot be found.
        SystemExit: as the program raises it.
    """
    polyproc.install()
    if as_module:
        # As `python -m`: the current directory comes first on the path.
        sys.path[0] = os.getcwd()
        sys.argv[:] = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
        return
    if not os.path.exists(target):
        raise FileNotFoundError(f"polyproc run: no such file: {target!r}")
    # As `python script.py`: the script's directory comes first on the path.
    sys.path[0] = os.path.dirname(os.path.abspath(target))
    sys.argv[:] = [target, *args]
    runpy.run_path(target, run_name="__main__")


USAGE = """\
usage: polyproc run SCRIPT [ARGS...]
       polyproc run -m MODULE [ARGS...]

Run a program with polyproc installed as `multiprocessing` (in the program and every
process it starts), as `python SCRIPT` or `python -m MODULE` would run it.
"""


def run_main(argv: list[str]) -> int:
    """``polyproc run ARGV``: returns the exit status (the program's own SystemExit
    propagates, as with ``python``)."""
    # Parsed by hand: everything after the script or module belongs to the program,
    # options included, which argparse cannot express.
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "-m":
        if len(argv) < 2:
            print("polyproc run: -m needs a module name", file=sys.stderr)
            return 2
        target, rest, as_module = argv[1], argv[2:], True
    else:
        target, rest, as_module = argv[0], argv[1:], False
    try:
        run_program(target, rest, as_module=as_module)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def add_run_command(sub: Any) -> None:
    """List ``run`` among the ``polyproc`` command's subcommands (for ``--help``); the
    command line itself goes to :func:`run_main` before argparse sees it."""
    sub.add_parser(
        "run",
        help="run a script or module with polyproc installed as multiprocessing",
        add_help=False,
    )
