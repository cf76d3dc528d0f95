"""Beyond the article: a progress bar over ``imap_unordered``, and ``pool.statistics()``
saying what each worker did."""

import sys

import polyproc as multiprocessing


def work(x: int) -> int:
    total = 0
    for i in range(20_000):  # a little CPU work per item, so the bar has time to move
        total += i % 7
    return x * x + total * 0


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1] if len(sys.argv) > 1 else None, force=True)
    with multiprocessing.Pool(2) as pool:
        total = sum(pool.imap_unordered(work, range(2_000), progress=True))
        stats = pool.statistics()
    print("sum of squares:", total, "(expected", sum(x * x for x in range(2_000)), ")")
    print(f"{stats.tasks_done} tasks done, {stats.tasks_failed} failed")
    for worker in stats.per_worker:
        print(f"  worker pid {worker.pid}: {worker.tasks_done} tasks, "
              f"busy {worker.busy_seconds:.2f} s, idle {worker.idle_seconds:.2f} s")
