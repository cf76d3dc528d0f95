"""polyproc.install() and `polyproc run`: polyproc *is* multiprocessing for a whole program.

The programs here are written for the standard library (``import multiprocessing``,
``concurrent.futures.ProcessPoolExecutor``) and run unchanged; each runs in its own
interpreter, since installing is for the whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import polyproc

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = polyproc.get_all_start_methods()


def _python(*args: str, timeout: float = 60, cwd: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "POLYPROC_AS_MULTIPROCESSING"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**clean, **(env or {})}, check=False)


def _run_client(scenario: str, method: str) -> object:
    done = _python("-m", "polyproc", "run", os.path.join(HERE, "_futures_client.py"),
                   scenario, method)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["multiprocessing"] == "polyproc"
    return line["result"]


def test_install_aliases_every_submodule() -> None:
    code = textwrap.dedent("""
        import sys, polyproc
        polyproc.install()
        import multiprocessing, multiprocessing.pool, multiprocessing.dummy.connection
        from multiprocessing import queues, synchronize, managers
        import multiprocessing.connection as connection
        assert multiprocessing is polyproc
        assert multiprocessing.pool is polyproc.pool is sys.modules["multiprocessing.pool"]
        assert queues is polyproc.queues and synchronize is polyproc.synchronize
        assert connection is polyproc.connection and managers is polyproc.managers
        assert multiprocessing.dummy.connection is sys.modules["polyproc.dummy.connection"]
        assert polyproc.pool.__spec__.name == "polyproc.pool"  # keeps its own identity
        try:
            import multiprocessing.no_such_module
        except ModuleNotFoundError as exc:
            assert exc.name == "multiprocessing.no_such_module", exc.name
        print("ok")
    """)
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_install_after_the_stdlib_was_imported_warns_and_names_the_holders() -> None:
    code = textwrap.dedent("""
        import warnings, multiprocessing as early, polyproc
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            polyproc.install()
        import multiprocessing
        print(multiprocessing is polyproc, early is polyproc)
        print(caught[0].category.__name__, "__main__" in str(caught[0].message))
    """)
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "RuntimeWarning", "True"]


@pytest.mark.parametrize("method", METHODS)
def test_children_of_every_start_method_inherit_the_install(method: str) -> None:
    code = textwrap.dedent(f"""
        import polyproc
        polyproc.install()
        import multiprocessing

        def child(queue):
            import sys
            import multiprocessing.pool
            queue.put([multiprocessing.__name__, sys.modules["multiprocessing.pool"].__name__])

        if __name__ == "__main__":
            ctx = multiprocessing.get_context({method!r})
            queue = ctx.Queue()
            process = ctx.Process(target=child, args=(queue,))
            process.start()
            print(queue.get(timeout=30))
            process.join(30)
    """)
    done = _python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['polyproc', 'polyproc.pool']"


def test_run_script_behaves_like_python(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "prog.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent("""
            import sys, multiprocessing
            print(__name__, sys.argv[1:], sys.path[0] == __import__("os").path.dirname(
                __import__("os").path.abspath(__file__)), multiprocessing.__name__)
            sys.exit(3)
        """))
    done = _python("-m", "polyproc", "run", script, "-x", "--flag", "arg")
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["__main__", "['-x',", "'--flag',", "'arg']", "True",
                                   "polyproc"]


def test_run_module_from_the_current_directory(tmp_path: object) -> None:
    with open(os.path.join(str(tmp_path), "localmod.py"), "w") as f:
        f.write("import sys, multiprocessing\nprint(__name__, sys.argv[0].endswith("
                "'localmod.py'), sys.argv[1:], multiprocessing.__name__)\n")
    done = _python("-m", "polyproc", "run", "-m", "localmod", "a", "-b", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    # As `python -m localmod a -b`: argv[0] is the module's full path.
    assert done.stdout.split() == ["__main__", "True", "['a',", "'-b']", "polyproc"]


def test_run_missing_script_is_a_clear_error() -> None:
    done = _python("-m", "polyproc", "run", "no_such_script.py")
    assert done.returncode == 2
    assert "no such file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("map", [i * i for i in range(20)]),
        ("exception", ["ValueError", "bad input 3", True]),
        ("unpicklable", [True, 25]),
        ("killed", ["BrokenProcessPool", "BrokenProcessPool"]),
        ("initializer", ["yes"]),
        ("cancel", [True, True]),
    ],
)
def test_process_pool_executor_of_the_stdlib_runs_on_polyproc(
    scenario: str, expected: object, method: str
) -> None:
    assert _run_client(scenario, method) == expected


@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor_default_context_and_worker_identity(method: str) -> None:
    result = _run_client("default", method)
    assert isinstance(result, list)
    assert result[0] == 49
    assert result[1][1] == "polyproc"  # the worker's multiprocessing is polyproc too


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_process_pool_executor_max_tasks_per_child(method: str) -> None:
    assert _run_client("max_tasks", method) == 3


_WITHOUT_INSTALL = textwrap.dedent("""
    import os, signal, sys
    import polyproc
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    def square(x):
        return x * x

    def suicide(_):
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == "__main__":
        try:
            pool = ProcessPoolExecutor(2, mp_context=polyproc.get_context(sys.argv[1]))
        except RuntimeError as exc:
            print("refused:", exc)
            sys.exit(0)
        with pool:
            print(list(pool.map(square, range(5))))
            print(type(pool.submit(suicide, 0).exception(timeout=30)).__name__)
""")


def test_executor_given_a_polyproc_fork_context_without_install_works(tmp_path) -> None:
    script = tmp_path / "no_install.py"
    script.write_text(_WITHOUT_INSTALL)
    done = _python(str(script), "fork")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[0, 1, 4, 9, 16]", "BrokenProcessPool"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_executor_given_a_fresh_interpreter_context_without_install_says_the_fix(
    tmp_path, method: str
) -> None:
    """Refused at construction, naming the fix, instead of failing obscurely at a submit."""
    script = tmp_path / "no_install.py"
    script.write_text(_WITHOUT_INSTALL)
    done = _python(str(script), method)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:")
    assert "polyproc.install()" in done.stdout and "polyproc run" in done.stdout
