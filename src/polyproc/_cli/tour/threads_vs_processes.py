"""Seed example 3: the same function run by threads and by processes.

Threads append to one shared list, so it grows; each process appends to its own copy,
so each prints a one-element list.
"""

import sys
import threading

import polyproc as multiprocessing


def run(info_list: list[int], n: int) -> None:
    info_list.append(n)
    # One write per line, so that lines from different processes never interleave.
    print(f"{info_list}\n", end="", flush=True)


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    print("with threads:")
    info: list[int] = []
    threads = [threading.Thread(target=run, args=[info, i]) for i in range(10)]
    for t in threads:
        t.start()
        t.join()
    print("with processes:")
    info = []
    processes = [multiprocessing.Process(target=run, args=[info, i]) for i in range(10)]
    for p in processes:
        p.start()
    for p in processes:
        p.join()
    print("the parent's list is still", info)
