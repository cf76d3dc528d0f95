"""The clients tier's quick slice (``make test``): third-party code run unchanged on the
standard library and on polyproc; every test that passes on the first must pass on the
second, less the differences by design of ``tests/clients/differences.py``.

The whole tier, with its table of pass counts, is ``make clients`` (``python -m
tests.clients``). The code run here is fetched from package registries on first use and
cached in ``.cache/clients/`` (see ``tests/clients/_fetch.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients import all_clients
from tests.clients._compare import compare, details, table

CLIENTS = {client.name: client for client in all_clients()}


@pytest.mark.slow
@pytest.mark.timeout(600)  # two runs of a suite slice, plus a rerun of any difference
@pytest.mark.parametrize("name", sorted(CLIENTS))
def test_client_passes_on_polyproc_what_it_passes_on_the_stdlib(
    name: str, tmp_path: Path
) -> None:
    report = compare(CLIENTS[name], quick=True, log_dir=tmp_path, jobs=2)
    assert report.runs["stdlib"].results, f"{name}: the stdlib run reported no test"
    summary = f"{table([report])}\n{details([report])}"
    assert report.unexpected() == {}, summary
