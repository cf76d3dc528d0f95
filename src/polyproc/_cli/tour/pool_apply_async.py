"""Seed example 8: apply_async results collected with ``get(timeout=10)``."""

import sys
import time

import polyproc as multiprocessing


def f(x: int) -> int:
    time.sleep(0.1)  # the article's stand-in for real work
    return x * x


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    pool = multiprocessing.Pool(processes=4)
    res_list = [pool.apply_async(f, [i]) for i in range(10)]
    print([r.get(timeout=10) for r in res_list])
    pool.close()
    pool.join()
