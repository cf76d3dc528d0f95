"""Seed example 1: ``Pool(5).map(f, [1, 2, 3])`` gives ``[1, 4, 9]``."""

import sys

import polyproc as multiprocessing


def f(x: int) -> int:
    return x * x


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    p = multiprocessing.Pool(5)
    print(p.map(f, [1, 2, 3]))
    p.close()
    p.join()
