"""PoolExecutor: the pool behind the concurrent.futures interface."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from polyproc.exceptions import ProcessError, WorkerLostError
from polyproc.pool import PoolExecutor
from tests import _workers
from tests._support import SHORT_TIMEOUT, wait_until


@pytest.fixture
def executor(ctx):
    """A two-worker executor of each start method."""
    ex = PoolExecutor(2, mp_context=ctx)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def test_submit_and_map(executor):
    """submit returns standard futures; map yields results in order."""
    future = executor.submit(_workers.square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert 49 == future.result(SHORT_TIMEOUT)
    assert [0, 1, 4] == list(executor.map(_workers.square, range(3), timeout=SHORT_TIMEOUT))


def test_a_dead_worker_fails_only_its_future(executor):
    """Unlike ProcessPoolExecutor, one crash does not break the executor."""
    doomed = executor.submit(_workers.kill_myself, None)
    with pytest.raises(WorkerLostError):
        doomed.result(SHORT_TIMEOUT)
    assert 9 == executor.submit(_workers.square, 3).result(SHORT_TIMEOUT)


def test_cancel_futures_on_shutdown(ctx):
    """shutdown(cancel_futures=True) cancels what has not started; the rest completes."""
    ex = PoolExecutor(1, mp_context=ctx)
    blocker = ex.submit(_workers.block_forever, None)
    assert wait_until(blocker.running)  # sent to the worker: it can no longer be cancelled
    queued = [ex.submit(_workers.square, i) for i in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    # One may already sit in the worker's pipe behind the blocker (prefetch); not the rest.
    assert sum(f.cancelled() for f in queued) >= 4
    ex._pool.terminate()
    with pytest.raises(ProcessError, match="terminated"):
        blocker.result(SHORT_TIMEOUT)
    with pytest.raises(RuntimeError):
        ex.submit(_workers.square, 1)


def test_asyncio_accepts_the_futures(executor):
    """The futures work with asyncio's run_in_executor."""

    async def main():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, _workers.square, 6)

    assert 36 == asyncio.run(main())
