"""Build the native modules (everything else is declared in pyproject.toml).

- ``polyproc._os._semaphore``: process-shared semaphores on Linux futexes, the base of
  Lock, RLock and Semaphore;
- ``polyproc._os._ring``: the shared-memory message ring behind the queues;
- ``polyproc._os._lifeline``: a child's end, a grace period after its parent's, without a
  thread;
- ``polyproc._os._atomic``: compare-and-swap on a word of shared memory (a pool worker
  claiming its next task).

The header comment of each C source says why it is native.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
HEADERS = ["src/polyproc/_os/_futex.h"]

setup(
    ext_modules=[
        Extension(
            "polyproc._os._semaphore",
            ["src/polyproc/_os/_semaphore.c"],
            depends=HEADERS,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "polyproc._os._ring",
            ["src/polyproc/_os/_ring.c"],
            depends=HEADERS,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "polyproc._os._lifeline", ["src/polyproc/_os/_lifeline.c"], extra_compile_args=FLAGS
        ),
        Extension(
            "polyproc._os._atomic", ["src/polyproc/_os/_atomic.c"], extra_compile_args=FLAGS
        ),
    ]
)
