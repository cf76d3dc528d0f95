"""Seed example: a child changes a shared Value and Array; the parent sees the change."""

import sys
from typing import Any

import polyproc as multiprocessing


def f(n: Any, a: Any) -> None:
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    num = multiprocessing.Value("d", 0.0)
    arr = multiprocessing.Array("i", range(10))
    print(num.value, arr[:])
    p = multiprocessing.Process(target=f, args=(num, arr))
    p.start()
    p.join()
    print(num.value, arr[:])
