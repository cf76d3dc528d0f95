"""The quick subset run by ``make test``: public tests of the core areas known to pass.

``quick_expected.txt`` lists one test id (``method:Class.test``) per line; ``#`` starts a
comment. ``python -m tests.compat --update-quick`` regenerates it from the public tests of
:data:`QUICK_CLASSES` that pass in every one of several rounds, so that a flaky test does not
make ``make test`` flaky, and that take at most :data:`MAX_TEST_SECONDS`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EXCLUDED", "EXPECTED_FILE", "MAX_TEST_SECONDS", "QUICK_CLASSES", "parse_id", "read_expected",
    "write_expected",
]

EXPECTED_FILE = Path(__file__).resolve().parent / "quick_expected.txt"

#: Classes the quick subset is drawn from: the process life cycle and the connection layer,
#: which everything else is built on, then shared state, the pool and managers.
QUICK_CLASSES: tuple[str, ...] = (
    "WithProcessesTestProcess",
    "WithProcessesTestConnection",
    "WithProcessesTestListener",
    "WithProcessesTestListenerClient",
    "WithProcessesTestPoll",
    "TestWait",
    "WithProcessesTestLock",
    "WithProcessesTestSemaphore",
    "WithProcessesTestEvent",
    "WithProcessesTestValue",
    "WithProcessesTestArray",
    "WithProcessesTestQueue",
    "TestSimpleQueue",
    "WithProcessesTestSharedMemory",
    "WithProcessesTestPool",
    "WithManagerTestContainers",
    "WithManagerTestQueue",
    "WithManagerTestLock",
    "WithManagerTestRemoteManager",
    "TestSyncManagerTypes",
)

#: Tests kept out of the quick subset whatever a regeneration run says, with the reason.
EXCLUDED: dict[str, str] = {
    "WithProcessesTestProcess.test_parent_process":
        "passed two rounds under spawn but hung once (LONG_TIMEOUT wait) in a full run",
}

#: A test slower than this in any round stays out of the quick subset (the suite's timeout
#: tests wait 3 to 5 seconds on purpose; the figure run still covers them).
MAX_TEST_SECONDS = 2.5

_HEADER = """\
# Quick subset of CPython's multiprocessing suite run by `make test` (python -m tests.compat
# --quick): public-API tests of the core areas that polyproc passes. Every test listed
# here must pass. Regenerate with: python -m tests.compat --update-quick
"""


def read_expected(path: Path = EXPECTED_FILE) -> list[str]:
    """Return the test ids listed in *path* (an absent file lists none)."""
    if not path.exists():
        return []
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        test_id = line.split("#", 1)[0].strip()
        if test_id:
            ids.append(test_id)
    return ids


def write_expected(ids: list[str], target: str, path: Path = EXPECTED_FILE) -> None:
    """Write *ids*, sorted, under the explanatory header."""
    body = "".join(f"{test_id}\n" for test_id in sorted(ids))
    path.write_text(_HEADER + f"# Generated against: {target}\n" + body, encoding="utf-8")


def parse_id(test_id: str) -> tuple[str, str, str]:
    """Split ``method:Class.test`` into its three parts.

    Raises:
        ValueError: *test_id* is not of that form.
    """
    method, sep, rest = test_id.partition(":")
    cls, dot, name = rest.partition(".")
    if not (sep and dot and method and cls and name):
        raise ValueError(f"bad test id {test_id!r}: expected method:Class.test")
    return method, cls, name
