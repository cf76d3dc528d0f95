"""Small programs whose output must be the same under polyproc and the standard library.

Run as ``python tests/_behaviour_workers.py SCENARIO MODULE METHOD [ARGS...]``, where
MODULE is ``multiprocessing`` or ``polyproc`` (imported as ``mp``) and METHOD a start
method. Each scenario prints what a program could observe; tests/test_stdlib_behaviour.py
runs it under both libraries and compares. This file is also the main module that
spawned children import, so everything runs under the ``__main__`` guard.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import warnings
from typing import Any

mp = importlib.import_module(sys.argv[2] if len(sys.argv) > 2 else "polyproc")

# A payload big enough that writing it to a spawned child takes a while (see quick_exit).
BIG = b"x" * (1 << 20)


def _normalized(text: str) -> str:
    """Process ids vary from run to run; the rest of a repr must not."""
    return re.sub(r"(pid|parent)=\d+", r"\1=N", text)


# -- targets (module level: spawned children find them by name) ---------------------------
def noop() -> None:
    """Do nothing."""


def task_name(_: object) -> str:
    """The name of the process running the task."""
    return str(mp.current_process().name)


def wait_then_exit(event: Any, code: int) -> None:
    """Wait for *event*, then exit with *code*."""
    event.wait()
    sys.exit(code)


def print_own_reprs() -> None:
    """Print the child's view of itself and of its parent."""
    print("child current:", _normalized(repr(mp.current_process())))
    print("child parent:", _normalized(repr(mp.parent_process())))


def print_without_flush(text: str) -> None:
    """Print *text* with no newline and no flush (the child's exit must flush it)."""
    print(text, end="")


def say(conn: Any, data: bytes = b"") -> None:
    """Tell the parent this child ran (if the parent is still there to hear it)."""
    try:
        conn.send("ran")
    except OSError:
        pass  # the parent has exited: the test is about the exit, not this message


def print_ran(data: bytes = b"") -> None:
    """Print that the child ran."""
    print("child ran", len(data), flush=True)


def square(x: int) -> int:
    """x * x."""
    return x * x


def fail() -> None:
    """Raise in the child."""
    raise ValueError("boom")


# -- scenarios -----------------------------------------------------------------------------
def names(ctx: Any, method: str) -> None:
    """Pool worker names, numbered by the process counter."""
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    print(p.name)
    pool = ctx.Pool(2)
    print(sorted(c.name for c in mp.active_children()))
    workers = {c.name for c in mp.active_children()}
    print(set(pool.map(task_name, range(8), chunksize=1)) <= workers)
    pool.close()
    pool.join()
    q = ctx.Process(target=noop)
    print(q.name)
    mp.set_start_method(method, force=True)
    with mp.Pool(1) as pool:
        print(pool.apply(task_name, (0,)))


def reprs(ctx: Any, method: str) -> None:
    """Process reprs in every state."""
    event = ctx.Event()
    p = ctx.Process(target=wait_then_exit, args=(event, 1))
    print(_normalized(repr(p)))
    p.start()
    print(_normalized(repr(p)))
    event.set()
    p.join()
    print(_normalized(repr(p)))
    d = ctx.Process(target=wait_then_exit, args=(ctx.Event(), 0), daemon=True)
    d.start()
    print(_normalized(repr(d)))
    d.terminate()
    d.join()
    print(_normalized(repr(d)))
    k = ctx.Process(target=wait_then_exit, args=(ctx.Event(), 0), name="killed")
    k.start()
    k.kill()
    k.join()
    print(_normalized(repr(k)))
    k.close()
    print(_normalized(repr(k)))
    ok = ctx.Process(target=print_own_reprs)
    ok.start()
    ok.join()
    print(_normalized(repr(ok)))
    print(_normalized(repr(mp.current_process())))


def flush(ctx: Any, method: str) -> None:
    """Text buffered before start() is printed once, before the child's."""
    for stream, tag in ((sys.stdout, "out"), (sys.stderr, "err")):
        stream.write(f"{tag}-before;")
    for i in range(2):
        print(f"parent-{i};", end="")
        p = ctx.Process(target=print_without_flush, args=(f"child-{i};",))
        p.start()
        p.join()
    print("parent-end")


def noise(ctx: Any, method: str) -> None:
    """Start everything, join and close nothing: the exit must be silent."""
    q = ctx.Queue()
    for _ in range(100):
        q.put(b"y" * 1000)
    _r, w = ctx.Pipe()
    w.send("never read")
    ctx.Process(target=say, args=(w,)).start()
    ctx.Process(target=noop, daemon=True).start()
    pool = ctx.Pool(2)
    pool.map_async(square, range(20))
    it = pool.imap(square, range(20))
    next(it)
    ctx.Pool(1)
    jq = ctx.JoinableQueue()
    jq.put(1)
    sq = ctx.SimpleQueue()
    sq.put(2)
    ctx.Lock(), ctx.Event(), ctx.Semaphore(), ctx.Value("i", 1), ctx.Array("i", 3)
    print("end", flush=True)


def quick_exit(ctx: Any, method: str) -> None:
    """Start a child, then exit at once (argv: daemon|plain, _exit|return)."""
    daemon, how = sys.argv[4], sys.argv[5]
    p = ctx.Process(target=print_ran, args=(BIG,), daemon=daemon == "daemon")
    p.start()
    if how == "_exit":
        os._exit(0)


def exit_while_starting(ctx: Any, method: str) -> None:
    """Exit while another thread is in the middle of starting children (argv as above)."""
    daemon, how = sys.argv[4], sys.argv[5]
    r, w = ctx.Pipe(duplex=False)
    # Forking from a thread while the main thread lives warns, rightly (see
    # tests/test_fork_warning.py); this test is about the payloads, not that warning.
    warnings.filterwarnings("ignore", message="This process .* is multi-threaded",
                            category=DeprecationWarning)

    def starter() -> None:
        for _ in range(30):
            ctx.Process(target=say, args=(w, BIG), daemon=daemon == "daemon").start()

    threading.Thread(target=starter, daemon=True).start()
    r.recv()  # one child ran: the next start is under way
    print("parent exits", flush=True)
    if how == "_exit":
        os._exit(0)


def hold_until_killed(ready: Any, event: Any) -> None:
    """Say so on *ready*, then wait for an *event* that never comes."""
    ready.send("holding")
    event.wait()


def wait_for(ready: Any, event: Any) -> None:
    """Say so on *ready*, then return once *event* is set."""
    ready.send("waiting")
    event.wait()


def logs(ctx: Any, method: str) -> None:
    """What multiprocessing logs over a process's and a pool's life cycle, and at exit.

    At exit, the daemon is terminated and the other child is joined; that child ends
    when the exit sequence logs that it joins it (a handler sets its event), so that it
    is alive when the exit sequence looks for children, under the stdlib as under polyproc.
    """
    import logging

    level = int(sys.argv[4])
    logger = mp.log_to_stderr(level)
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    f = ctx.Process(target=fail)
    f.start()
    f.join()
    pool = ctx.Pool(2)
    pool.map(square, range(4))
    pool.close()
    pool.join()
    with ctx.Pool(1) as other:
        other.apply(square, (2,))
    ready_r, ready_w = ctx.Pipe(duplex=False)
    never = ctx.Event()
    daemon = ctx.Process(
        target=hold_until_killed, args=(ready_w, never), daemon=True, name="the-daemon"
    )
    daemon.start()
    ready_r.recv()
    release = ctx.Event()

    class Release(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("calling join() for process"):
                release.set()

    logger.addHandler(Release())
    waiter = ctx.Process(target=wait_for, args=(ready_w, release), name="the-waiter")
    waiter.start()
    # Running before exit: the stdlib's exit unlinks the semaphores of events before it
    # joins the children, and a spawned child that has not opened them by then fails.
    ready_r.recv()
    print("end", flush=True)


SCENARIOS = {
    f.__name__: f
    for f in (names, reprs, flush, noise, quick_exit, exit_while_starting, logs)
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](mp.get_context(sys.argv[3]), sys.argv[3])
