"""Seed example 2: ``Process(target=f, args=('bob',))`` with start and join.

The parent and the child each print their module name, parent pid and pid.
"""

import os
import sys

import polyproc as multiprocessing


def info(title: str) -> None:
    # One write per report, so the lines of parent and child never interleave.
    print(
        f"{title}\nmodule name: {__name__}\nparent process: {os.getppid()}\n"
        f"process id: {os.getpid()}",
        flush=True,
    )


def f(name: str) -> None:
    info("function f")
    print("hello", name, flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    info("main line")
    p = multiprocessing.Process(target=f, args=("bob",))
    p.start()
    p.join()
