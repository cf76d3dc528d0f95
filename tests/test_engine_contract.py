"""The contract between Pool and its engines (polyproc._pool._contract): every engine keeps
it, the run states are one enum, and the retry rule is one decision."""

from __future__ import annotations

import sys

import pytest

import polyproc
from polyproc._pool import _contract
from polyproc._pool._contract import Batch, Engine, RetryPolicy, RunState
from polyproc.pool import Pool, ThreadPool


def _square(x):
    return x * x


def _batch(stop=4, chunksize=1):
    delivered = []
    batch = Batch(b"data", lambda *args: delivered.append(args), lambda a, b: f"items {a}-{b}",
                  stop, chunksize=chunksize)
    return batch, delivered


def test_the_process_engine_keeps_the_contract(ctx):
    with Pool(1, context=ctx) as pool:
        assert isinstance(pool._engine, Engine)
        assert pool._engine.state is RunState.RUN


def test_the_thread_engine_keeps_the_contract():
    with ThreadPool(1) as pool:
        assert isinstance(pool._engine, Engine)
        assert pool._engine.state is RunState.RUN


def test_the_dask_engine_keeps_the_contract():
    # The engine's module imports Dask only when an engine is made: importing
    # ``distributed`` here would make every exception picklable for the rest of the test
    # process (see conftest.py), so the class is checked without it.
    from polyproc._backends._dask import DaskEngine

    # Checked against the class: starting a cluster is not needed to see its surface.
    missing = [name for name in _contract._EngineSpec.__dict__
               if not name.startswith("_") and not hasattr(DaskEngine, name)]
    assert missing in ([], ["prefetch_depth"])  # an instance attribute, set in __init__


def test_something_else_is_not_an_engine():
    assert not isinstance(object(), Engine)


def test_the_run_states_are_one_enum(ctx):
    pool = Pool(1, context=ctx)
    try:
        assert pool._engine.state is RunState.RUN
        assert "state=RUN " in repr(pool)
        pool.close()
        assert pool._engine.state is RunState.CLOSE
        assert "state=CLOSE " in repr(pool)
        pool.terminate()
        assert pool._engine.state is RunState.TERMINATE
        assert "state=TERMINATE " in repr(pool)
    finally:
        pool.terminate()
        pool.join()


def test_map_goes_through_submit_many(ctx):
    seen = []
    with Pool(1, context=ctx) as pool:
        engine = pool._engine
        original = engine.submit_many

        def spy(batches):
            seen.append(True)
            original(batches)

        engine.submit_many = spy
        assert pool.map(_square, range(10)) == [x * x for x in range(10)]
    assert seen == [True]


def test_the_registry_knows_dask_and_names_what_it_does_not_know():
    assert callable(_contract.cluster_engine("dask"))
    with pytest.raises(ValueError, match=r"no cluster backend 'nope'.*dask"):
        _contract.cluster_engine("nope")


# -- the retry decision ----------------------------------------------------------------------
def test_no_retries_fails_at_once_without_a_note():
    batch, _ = _batch()
    error = ValueError("x")
    assert RetryPolicy().retry(batch, 0, error) is None
    assert not getattr(error, "__notes__", [])
    assert batch.attempts == {}


def test_retries_are_counted_per_task_then_the_error_says_how_often():
    policy = RetryPolicy(2, (ValueError,))
    batch, _ = _batch(stop=4)
    again = policy.retry(batch, 2, ValueError("1"))
    assert again is not None and (again.start, again.stop) == (2, 3)
    assert again.attempts is batch.attempts  # a rerun counts against the same task
    assert policy.retry(again, 2, ValueError("2")) is not None
    assert batch.attempts == {2: 2}
    last = ValueError("3")
    assert policy.retry(again, 2, last) is None
    assert last.__notes__ == ["the pool ran this task 3 times (retries=2)"]
    # Another task of the batch has its own count.
    assert policy.retry(batch, 0, ValueError("other")) is not None


def test_only_the_chosen_types_are_retried():
    policy = RetryPolicy(3, (KeyError, polyproc.TimeoutError))
    batch, _ = _batch()
    assert policy.retry(batch, 0, ValueError("no")) is None
    assert policy.retry(batch, 0, KeyError("yes")) is not None
    assert policy.retry(batch, 1, polyproc.TimeoutError("yes")) is not None
    assert policy.retry(batch, 2, BaseException("no")) is None


def test_a_retried_chunk_keeps_its_chunks():
    policy = RetryPolicy(1, (ValueError,))
    batch, _ = _batch(stop=10, chunksize=4)
    again = policy.retry(batch, 8, ValueError())
    assert again is not None
    assert (again.start, again.stop, again.chunksize) == (8, 10, 4)


def test_every_engine_asks_the_one_policy():
    from polyproc._pool import _threads
    from polyproc._pool._local import _engine

    for module in (_engine, _threads):
        assert module.RetryPolicy is RetryPolicy
    try:
        from polyproc._backends import _dask
    except ImportError:
        return
    assert _dask.RetryPolicy is RetryPolicy


def test_the_protocol_names_what_pool_uses_and_the_pool_does_not_import_typing():
    import subprocess
    import typing

    assert sorted(typing._get_protocol_attrs(Engine)) == [
        "add_source", "check_running", "close", "join", "prefetch_depth", "size", "state",
        "statistics", "submit", "submit_many", "terminate",
    ]
    # The Protocol is built on first lookup, so importing the pool stays free of typing.
    code = "import sys, polyproc.pool; print('typing' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"
