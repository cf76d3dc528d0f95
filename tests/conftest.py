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
