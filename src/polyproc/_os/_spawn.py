"""Start a fresh interpreter that inherits chosen descriptors."""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["interpreter_flags", "spawn_executable"]

# Descriptors are made inheritable only for the instant of the spawn; the lock keeps two
# of our own spawns from handing each other's descriptors to the wrong child.
_inherit_lock = threading.Lock()


def _reset_after_fork() -> None:
    # A thread of the parent may have held the lock at the instant of fork.
    global _inherit_lock
    _inherit_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def spawn_executable(argv: list[str], pass_fds: list[int]) -> int:
    """Start ``argv[0]`` with *argv*, passing *pass_fds* under the same numbers.

    Uses ``posix_spawn`` (vfork-fast, safe with threads). Returns the child's pid.
    """
    with _inherit_lock:
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        try:
            return os.posix_spawn(argv[0], argv, os.environ)
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)


def interpreter_flags() -> list[str]:
    """Command-line flags that reproduce this interpreter's settings in a child.

    Mirrors what the standard library passes (optimization, warnings, ``-X`` options,
    isolation) so a child behaves like its parent.
    """
    flags = sys.flags
    args: list[str] = []
    if flags.optimize:
        args.append("-" + "O" * flags.optimize)
    if flags.dont_write_bytecode:
        args.append("-B")
    if flags.isolated:
        args.append("-I")
    else:
        if flags.ignore_environment:
            args.append("-E")
        if flags.no_user_site:
            args.append("-s")
        if getattr(flags, "safe_path", False):
            args.append("-P")
    if flags.no_site:
        args.append("-S")
    if flags.bytes_warning:
        args.append("-" + "b" * flags.bytes_warning)
    if flags.quiet:
        args.append("-q")
    for option in sys.warnoptions:
        args.append("-W" + option)
    for key, value in sys._xoptions.items():
        args.append("-X" + (key if value is True else f"{key}={value}"))
    return args
