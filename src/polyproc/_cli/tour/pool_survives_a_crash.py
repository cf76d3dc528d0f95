"""Beyond the article: a worker killed mid-task (as the OOM killer would) fails only its
task, with an error that says what happened; the pool replaces it and carries on."""

import os
import signal
import sys

import polyproc as multiprocessing


def work(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # stands in for the OOM killer
    return x * x


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    with multiprocessing.Pool(2) as pool:
        results = [pool.apply_async(work, (i,)) for i in range(6)]
        for i, result in enumerate(results):
            try:
                print(i, "->", result.get(timeout=30))
            except multiprocessing.WorkerLostError as exc:
                print(i, "-> lost:", exc)
        print("the pool goes on:", pool.map(work, [4, 5]))
