"""Differences by design: client tests that pass on the standard library and are expected
not to on polyproc, each with its reason.

Keys are ``(client name, test id pattern)``; ``*`` in a pattern matches any text (and is
the only special character: test ids hold brackets, ``mp_pool.py[spawn]``). Only behaviour
polyproc chose to differ on belongs here; a failure that is a bug is reported and stays
visible in the tier's output.
"""

from __future__ import annotations

import re

BY_DESIGN: dict[tuple[str, str], str] = {
    # pebble's deadlock tests make a worker die (os._exit) while it holds the pool
    # channel's RLock, and expect the next acquire(timeout=0.1) to fail so that the pool
    # declares itself broken. polyproc's locks are robust: the next acquire takes the lock
    # over from the dead holder (with an AbandonedLockWarning) instead of hanging, so the
    # pool goes on and the task reports the worker's death (ProcessExpired) instead of
    # BrokenProcessPool.
    ("pebble", "test/test_process_pool_*.py::TestProcessPoolDeadlockOn*"): (
        "a lock whose holder died is taken over (AbandonedLockWarning), not left held "
        "forever, so pebble's pool does not see the deadlock its test provokes"
    ),
    # aiomultiprocess checks that a process target defined inside a function cannot be
    # sent to a spawned child ("Can't pickle local object"). polyproc sends such functions
    # by value (cloudpickle) instead of failing, so the worker runs it.
    ("aiomultiprocess", "aiomultiprocess.tests.core.CoreTest.test_spawn_method"): (
        "local functions and lambdas are pickled by value (cloudpickle), so no "
        "AttributeError \"Can't pickle local object\""
    ),
    # tqdm's suite runs with -W error (as its own configuration does). polyproc warns, as
    # Python 3.12+'s os.fork does, when a program forks while threads of its own are
    # alive (here tqdm's monitor thread and a ThreadPoolExecutor's); Python 3.11's
    # stdlib does not, so the warning, made an error, fails these tests.
    **{
        ("tqdm", test_id): (
            "DeprecationWarning on fork() with other threads alive (what Python 3.12+ does; "
            "asked for by the fault suite); tqdm's -W error makes it fail the test"
        )
        for test_id in (
            "tests/tests_concurrent.py::test_concurrent_map[process_map]",
            "tests/tests_concurrent.py::test_concurrent_map_unknown_len[process_map]",
            "tests/tests_synchronisation.py::test_imap",
        )
    },
}


def reason(client: str, test_id: str) -> str | None:
    """Why *test_id* of *client* may differ on polyproc, or None if it may not."""
    for (name, pattern), why in BY_DESIGN.items():
        regex = ".*".join(re.escape(part) for part in pattern.split("*"))
        if name == client and re.fullmatch(regex, test_id):
            return why
    return None
