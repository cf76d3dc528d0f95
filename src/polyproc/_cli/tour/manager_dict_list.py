"""Seed example: a child changes a ``Manager().dict()`` and a ``Manager().list()``; the
parent sees the changes through its proxies."""

import sys
from typing import Any

import polyproc as multiprocessing


def f(d: Any, l: Any) -> None:  # noqa: E741 - the article's names
    d[1] = "1"
    d["2"] = 2
    d[0.25] = None
    l.reverse()


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    with multiprocessing.Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))  # noqa: E741

        p = multiprocessing.Process(target=f, args=(d, l))
        p.start()
        p.join()

        print(d)
        print(l)
