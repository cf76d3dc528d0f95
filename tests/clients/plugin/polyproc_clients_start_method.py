"""Run a program with a chosen default start method, the program itself unchanged.

Usage: ``python polyproc_clients_start_method.py METHOD PROGRAM.py [ARGS...]``: calls
``multiprocessing.set_start_method(METHOD)``, then runs PROGRAM as ``__main__`` the way
``python PROGRAM.py`` would (``sys.argv``, ``sys.path[0]``, ``__file__``), so that a
spawned child finds and re-imports it as ``__mp_main__``. Used for the documentation
examples that do not choose a start method themselves.
"""

import multiprocessing
import os
import runpy
import sys

if __name__ == "__main__":
    method, program, *args = sys.argv[1:]
    multiprocessing.set_start_method(method)
    sys.argv[:] = [program, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(program))
    runpy.run_path(program, run_name="__main__")
