"""Fixtures: a context per start method, and a check that no test leaves children."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import polyproc
from tests._support import SHORT_TIMEOUT, START_METHODS


@pytest.fixture(params=START_METHODS)
def ctx(request: pytest.FixtureRequest) -> polyproc.context.BaseContext:
    """The polyproc context of each start method in turn."""
    return polyproc.get_context(request.param)


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """Fail a test that leaves a child process of ours running."""
    yield
    leftovers = polyproc.active_children()
    for child in leftovers:
        child.kill()
        child.join(SHORT_TIMEOUT)
    assert leftovers == [], f"test left children running: {leftovers}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the Dask tests last: importing Dask's ``distributed`` makes every exception
    picklable for the rest of the process (it installs tblib's reducers in copyreg), which
    would change what the tests of unpicklable exceptions see."""
    items.sort(key=lambda item: item.path.name == "test_dask.py")
