"""The Pool on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1, started by the fixture with Dask's own commands and shut down after."""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys

import pytest

import polyproc
from polyproc.exceptions import WorkerLostError
from polyproc.pool import PoolExecutor
from tests import _workers
from tests._support import SHORT_TIMEOUT, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The scheduler's address; two single-threaded workers (each under a nanny, which
    restarts a worker that dies)."""
    # Imported here, not at collection: importing it changes how every exception pickles
    # for the rest of the process (see conftest), and these tests run last.
    import distributed
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        # A task is declared lost after it killed two workers (the default is four).
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
    }
    log = open(folder / "cluster.log", "w")  # noqa: SIM115 - closed at teardown
    processes = [subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )]
    client = None
    try:
        assert wait_until(scheduler_file.exists, 60), "the scheduler did not start"
        address = json.loads(scheduler_file.read_text())["address"]
        for name in ("w1", "w2"):
            processes.append(subprocess.Popen(
                [dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1", "--name", name],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))
        client = distributed.Client(address, timeout=60)
        client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        if client is not None:
            client.shutdown()  # stops the scheduler and the workers
            client.close()
        for process in processes:
            try:
                process.wait(SHORT_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(SHORT_TIMEOUT)
        log.close()


@pytest.fixture
def pool(cluster):
    p = polyproc.Pool(cluster=cluster)
    try:
        yield p
    finally:
        p.terminate()


def test_seed_examples(pool):
    assert pool.map(_workers.square, [1, 2, 3]) == [1, 4, 9]
    results = [pool.apply_async(_workers.square, (i,)) for i in range(10)]
    assert [r.get(timeout=10) for r in results] == [i * i for i in range(10)]
    assert pool._processes == 2  # the cluster's worker threads


def test_map_family(pool):
    assert pool.starmap(divmod, [(7, 2), (9, 4)]) == [(3, 1), (2, 1)]
    assert list(pool.imap(_workers.square, range(50))) == [i * i for i in range(50)]
    assert sorted(pool.imap_unordered(_workers.square, range(50), chunksize=7)) == [
        i * i for i in range(50)
    ]
    offset = 3
    assert pool.map(lambda x: x + offset, [1, 2]) == [4, 5]  # closures travel by value
    done = []
    pool.map_async(_workers.square, [4], callback=done.append).wait(SHORT_TIMEOUT)
    assert wait_until(lambda: done == [[16]], SHORT_TIMEOUT)


def test_exceptions_carry_the_workers_traceback(pool):
    with pytest.raises(ValueError, match="boom") as caught:
        pool.apply(_workers.fail_with, ("boom",))
    assert "fail_with" in str(caught.value.__cause__)


def test_progress_bar(pool):
    class Bar:
        total = None
        n = 0
        closed = False

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    bar = Bar()
    pool.map(_workers.square, range(40), chunksize=3, progress=bar)
    assert (bar.n, bar.closed, bar.total) == (40, True, 40)


def test_imap_reads_its_input_lazily(pool):
    """An endless generator: only a bounded window of it is ever read."""
    consumed = itertools.count()

    def numbers():
        for n in itertools.count():
            next(consumed)
            yield n

    results = pool.imap(_workers.square, numbers())
    assert [next(results) for _ in range(100)] == [i * i for i in range(100)]
    assert next(consumed) < 20_000


def test_a_worker_killed_once_is_retried_by_dask(pool, tmp_path):
    """The worker running the task dies; Dask runs the task again on a worker."""
    task = functools.partial(_workers.kill_once_then_square, str(tmp_path / "marker"))
    assert pool.apply(task, (6,)) == 36


def test_a_task_that_kills_every_worker_fails_as_lost(pool):
    with pytest.raises(WorkerLostError, match="died each time"):
        pool.apply(_workers.kill_this_process, (1,))
    assert pool.map(_workers.square, [3]) == [9]  # the pool goes on


def test_task_timeout(cluster):
    with polyproc.Pool(cluster=cluster, task_timeout=0.5) as pool:
        slow = pool.apply_async(_workers.busy_for, (3,))
        with pytest.raises(TimeoutError, match="task_timeout"):
            slow.get(SHORT_TIMEOUT)


def test_executor_on_the_cluster(cluster):
    with PoolExecutor(cluster=cluster) as executor:
        assert executor.submit(_workers.square, 9).result(timeout=SHORT_TIMEOUT) == 81
        assert list(executor.map(_workers.square, range(5))) == [0, 1, 4, 9, 16]


def test_without_dask_the_error_says_what_to_install():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import polyproc\n"
        "try:\n"
        "    polyproc.Pool(cluster='tcp://127.0.0.1:1')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=SHORT_TIMEOUT, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert "pip install 'polyproc[dask]'" in out.stdout, out.stderr


def test_polyproc_map_on_the_cluster(cluster):
    """``polyproc map --cluster``: the command-line job, run by the cluster's workers."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    result = subprocess.run(
        [sys.executable, "-m", "polyproc", "map", "tests._workers:shout_or_die",
         "--cluster", cluster],
        input="a\nfail\nb\n", capture_output=True, text=True, env=env, timeout=SHORT_TIMEOUT,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r.get("result") for r in records] == ["A", None, "B"]
    assert records[1]["error"] == "ValueError: asked to fail"
    assert result.returncode == 1
