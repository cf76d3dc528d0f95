"""The chaos soak: ``make soak`` (``python -m tests.soak``), outside ``make test``.

For each start method, one Pool runs many tasks (100,000 by default) while things go
wrong on purpose:

* tasks that raise, return a result that cannot be pickled, return a result that pickles
  in the worker but cannot be unpickled in the parent, kill their own worker with
  SIGKILL, or hang past ``task_timeout``;
* a thread that SIGKILLs a random worker every ``--kill-every`` seconds, whatever it runs
  (the pool retries tasks lost that way: ``retries=3``, ``retry_on=(WorkerLostError,)``).

It then checks that every task was accounted for exactly once with the outcome its kind
calls for, and that nothing grew: child processes, descriptors, threads, parent memory,
files in /dev/shm. It prints one table row per start method and exits 1 on any breach.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

import polyproc
from polyproc.exceptions import SerializationError, WorkerLostError

KINDS = {  # kind: share of the tasks (the rest are "ok")
    "raise": 0.01,
    "unpicklable": 0.002,
    "unloadable": 0.002,
    "suicide": 0.0002,
    "hang": 0.00005,
}
TASK_TIMEOUT = 2.0


class Unloadable:
    """Pickles fine in the worker; unpickling it in the parent raises."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return _refuse_to_load, ()


def _refuse_to_load() -> None:
    raise RuntimeError("this result refuses to be unpickled")


def task(kind: str, index: int) -> object:
    """One task of the soak; what it does depends on *kind*."""
    if kind == "ok":
        return index * 2
    if kind == "raise":
        raise ValueError(f"task {index} raises")
    if kind == "unpicklable":
        return threading.Lock()
    if kind == "unloadable":
        return Unloadable()
    if kind == "suicide":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        threading.Event().wait(TASK_TIMEOUT * 30)
    raise AssertionError(kind)


RETRIES = 3


def _lost_every_time(outcome: object) -> bool:
    """Whether *outcome* says the task's worker was killed on every one of its runs (the
    killer thread can do that: retries exhausted is then the right outcome)."""
    notes = getattr(outcome, "__notes__", [])
    return isinstance(outcome, WorkerLostError) and any(
        f"ran this task {RETRIES + 1} times" in note for note in notes
    )


def expected(kind: str, outcome: object) -> bool:
    """Whether *outcome* (a value or an exception) is what a task of *kind* must give."""
    if _lost_every_time(outcome):
        return True
    if kind == "ok":
        return not isinstance(outcome, BaseException)
    checks: dict[str, type[BaseException]] = {
        "raise": ValueError,
        "unpicklable": SerializationError,
        "unloadable": SerializationError,
        "suicide": WorkerLostError,
        "hang": TimeoutError,
    }
    return isinstance(outcome, checks[kind])


@dataclass
class Resources:
    """What must not grow: a snapshot of the parent process and the machine."""

    children: int
    fds: int
    threads: int
    rss_mb: float
    shm: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def now(cls) -> Resources:
        me = psutil.Process()
        return cls(
            children=len(me.children(recursive=True)),
            fds=len(os.listdir("/proc/self/fd")),
            threads=threading.active_count(),
            rss_mb=me.memory_info().rss / 2**20,
            shm=frozenset(os.listdir("/dev/shm")),
        )


def _killer(pool: polyproc.pool.Pool, every: float, stop: threading.Event,
            kills: list[int]) -> None:
    rng = random.Random(7)
    while not stop.wait(every):
        pids = [w.pid for w in pool.statistics().per_worker if w.pid]
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills.append(1)
            except ProcessLookupError:
                pass


def soak_one(method: str, tasks: int, workers: int, kill_every: float,
             seed: int) -> tuple[dict[str, object], list[str]]:
    """Run the soak under *method*; returns the row of figures and the breaches found."""
    rng = random.Random(seed)
    kinds = []
    for _ in range(tasks):
        draw, kind = rng.random(), "ok"
        for name, share in KINDS.items():
            if draw < share:
                kind = name
                break
            draw -= share
        kinds.append(kind)
    outcomes: dict[int, list[object]] = {}
    lock = threading.Lock()

    def record(index: int) -> tuple[object, object]:
        def done(value: object) -> None:
            with lock:
                outcomes.setdefault(index, []).append(value)
        return done, done

    ctx = polyproc.get_context(method)
    stop, kills = threading.Event(), []
    started = time.monotonic()
    with ctx.Pool(workers, task_timeout=TASK_TIMEOUT, retries=RETRIES,
                  retry_on=(WorkerLostError,)) as pool:
        killer = threading.Thread(target=_killer, args=(pool, kill_every, stop, kills),
                                  daemon=True)
        killer.start()
        results = []
        for index, kind in enumerate(kinds):
            on_value, on_error = record(index)
            results.append(pool.apply_async(task, (kind, index), callback=on_value,
                                            error_callback=on_error))
        for result in results:
            result.wait(TASK_TIMEOUT * 60)
        stop.set()
        killer.join()
        pool.close()
        pool.join()
    elapsed = time.monotonic() - started

    breaches = []
    missing = [i for i in range(tasks) if i not in outcomes]
    doubled = [i for i, got in outcomes.items() if len(got) != 1]
    wrong = [i for i, got in outcomes.items() if got and not expected(kinds[i], got[0])]
    if missing:
        breaches.append(f"{len(missing)} tasks never reported (first: {missing[:5]})")
    if doubled:
        breaches.append(f"{len(doubled)} tasks reported more than once (first: {doubled[:5]})")
    for index in wrong[:5]:
        breaches.append(f"task {index} ({kinds[index]}) gave {outcomes[index][0]!r}")
    if len(wrong) > 5:
        breaches.append(f"... and {len(wrong) - 5} more wrong outcomes")
    row: dict[str, object] = {
        "method": method,
        "tasks": tasks,
        **{kind: kinds.count(kind) for kind in ("ok", *KINDS)},
        "external kills": len(kills),
        "seconds": round(elapsed, 1),
    }
    return row, breaches


def main(argv: list[str] | None = None) -> int:
    """Run the soak; returns the exit status (1 if anything breached)."""
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per start method")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=0.1,
                        help="seconds between two random worker kills")
    parser.add_argument("--methods", default=",".join(polyproc.get_all_start_methods()))
    parser.add_argument("--memory-slack-mb", type=float, default=20.0,
                        help="parent memory growth allowed between the warm-up and the end")
    args = parser.parse_args(argv)

    methods = args.methods.split(",")
    # A warm-up run per method first: one-time state (the fork server, the fd server,
    # imports) must not count as growth; the first one as big as the real runs, since
    # the allocator keeps the memory its peak (every task pending at once) took.
    for number, method in enumerate(methods):
        size = args.tasks if number == 0 else 2_000
        soak_one(method, size, args.workers, args.kill_every, seed=1)
    before = Resources.now()
    rows, all_breaches = [], []
    for method in methods:
        row, breaches = soak_one(method, args.tasks, args.workers, args.kill_every, seed=2)
        rows.append(row)
        all_breaches += [f"{method}: {b}" for b in breaches]
    after = Resources.now()

    for name in ("children", "fds", "threads"):
        if getattr(after, name) > getattr(before, name):
            all_breaches.append(f"{name} grew: {getattr(before, name)} -> {getattr(after, name)}")
    if after.rss_mb - before.rss_mb > args.memory_slack_mb:
        all_breaches.append(f"parent memory grew by {after.rss_mb - before.rss_mb:.1f} MB")
    if after.shm - before.shm:
        all_breaches.append(f"left in /dev/shm: {sorted(after.shm - before.shm)}")

    headers = list(rows[0])
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in headers) + " |")
    print(f"\nresources before -> after: children {before.children} -> {after.children}, "
          f"fds {before.fds} -> {after.fds}, threads {before.threads} -> {after.threads}, "
          f"parent RSS {before.rss_mb:.1f} -> {after.rss_mb:.1f} MB, "
          f"/dev/shm entries {len(before.shm)} -> {len(after.shm)}")
    if all_breaches:
        print("\nBREACHES:")
        for breach in all_breaches:
            print("  " + breach)
        return 1
    print("\nevery task accounted for exactly once, with the expected outcome; nothing grew")
    return 0


if __name__ == "__main__":
    sys.exit(main())
