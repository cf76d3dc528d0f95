"""Seed example: ten children each put ``[n, 'hello']`` on a Queue; the parent gets them."""

import sys
from typing import Any

import polyproc as multiprocessing


def f(q: Any, n: int) -> None:
    q.put([n, "hello"])


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    q = multiprocessing.Queue()
    for i in range(10):
        p = multiprocessing.Process(target=f, args=(q, i))
        p.start()
    for _ in range(10):
        print(q.get(), flush=True)
