"""Build the one native module (everything else is declared in pyproject.toml).

``polyproc._os._semaphore``: process-shared semaphores on Linux futexes, the base of
Lock, RLock, Semaphore and the queues; see the header comment of its C source for why it
is native.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "polyproc._os._semaphore",
            sources=["src/polyproc/_os/_semaphore.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
