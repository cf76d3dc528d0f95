"""Compatibility harness: CPython's own multiprocessing test suite, run against polyproc.

Run from the repository root::

    python -m tests.compat                      # full measurement, all start methods (slow)
    python -m tests.compat --quick              # the subset `make test` runs
    python -m tests.compat --target multiprocessing --json stdlib.json  # check the harness
    python -m tests.compat --baseline stdlib.json   # also list skips the stdlib does not have
    python -m tests.compat --update-quick           # regenerate quick_expected.txt

How it works (one module per step):

* :mod:`._suite` finds ``test/_test_multiprocessing.py`` of the running interpreter and writes a
  rewritten copy, with generated runner modules, into a temporary directory. The suite's text
  never enters the repository.
* :mod:`._rewrite` rewrites it token by token: ``multiprocessing`` -> ``polyproc``.
* :mod:`._standins` runs inside the test processes and supplies, only where polyproc lacks them,
  the private names the suite's set-up and tear-down touch.
* :mod:`._worker` runs inside a test process: one class, reported as JSON lines.
* :mod:`._runner` starts one worker per class, each under a timeout.
* :mod:`._classify` decides which tests use only the documented API (the compatibility figure
  counts only those) and which area each class covers.
* :mod:`._report` prints the table and writes the JSON results; :mod:`._quick` keeps the
  subset ``make test`` runs.
"""
