"""The ``clients`` test tier: third-party code run unchanged on the standard library and on
polyproc (``python -m polyproc run``), outcomes compared test by test.

Clients (each module says where its code comes from and how it is run):

* ``docs-examples`` (docs.py): the example programs of the documentation's
  multiprocessing page;
* ``pebble``, ``tqdm``, ``aiomultiprocess`` (suites.py): published libraries' own test
  suites, from PyPI;
* ``concurrent.futures`` (suites.py): CPython's ``test_concurrent_futures``.

Entry points: ``python -m tests.clients`` (``make clients``) prints the table of pass
counts; ``tests/test_clients.py`` runs the quick slice inside ``make test`` and fails on
any test that passes on the standard library but not on polyproc, less the differences by
design listed in ``differences.py``.
"""

from __future__ import annotations

from .docs import DocsExamples
from .suites import ConcurrentFutures, PytestSuite, UnittestSuite, aiomultiprocess, pebble, tqdm

__all__ = ["all_clients"]


def all_clients() -> list[DocsExamples | PytestSuite | UnittestSuite | ConcurrentFutures]:
    """Every client, in report order (each not yet prepared: nothing fetched)."""
    return [DocsExamples(), pebble(), tqdm(), aiomultiprocess(), ConcurrentFutures()]
