"""``python -m tests.clients [--quick] [--client NAME ...] [--jobs N]``: run the clients on
the standard library and on polyproc and print the table of pass counts.

Exit status: 0 when every test that passes on the standard library passes on polyproc
(less the differences by design), 1 otherwise; the run is a measurement either way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from . import all_clients
from ._compare import compare, details, table


def main(argv: list[str] | None = None) -> int:
    names = [client.name for client in all_clients()]
    parser = argparse.ArgumentParser(prog="python -m tests.clients", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="the slice that tests/test_clients.py runs in `make test`")
    parser.add_argument("--client", action="append", choices=names,
                        help="run only this client (repeatable)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="run the stdlib and polyproc runs of a client at once (2) or "
                             "one after the other (1)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="folder for the runs' output (default: a temporary folder, "
                             "named at the end)")
    args = parser.parse_args(argv)
    log_dir = args.logs or Path(tempfile.mkdtemp(prefix="polyproc-clients-logs-"))
    started = time.monotonic()
    reports = []
    for client in all_clients():
        if args.client and client.name not in args.client:
            continue
        print(f"running {client.name} ...", file=sys.stderr, flush=True)
        reports.append(compare(client, quick=args.quick, log_dir=log_dir, jobs=args.jobs))
    print(table(reports))
    print(details(reports))
    print(f"\nlogs: {log_dir}; {time.monotonic() - started:.0f} s in all")
    return 1 if any(report.unexpected() for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
