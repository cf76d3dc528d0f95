"""Seed example: a Lock makes each process's print whole and one at a time."""

import sys
from typing import Any

import polyproc as multiprocessing


def f(lock: Any, i: int) -> None:
    lock.acquire()
    print("hello world", i, flush=True)
    lock.release()


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    lock = multiprocessing.Lock()
    processes = [multiprocessing.Process(target=f, args=(lock, num)) for num in range(10)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
