"""Command-line entry point: ``polyproc [demo|info]``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import polyproc

from ._map import add_map_command
from ._run import add_run_command, run_main
from .tour import EXAMPLES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    methods = [args.start_method] if args.start_method else polyproc.get_all_start_methods()
    failures = 0
    for number, (module, title) in enumerate(EXAMPLES, start=1):
        for method in methods:
            print(f"\n=== {number}. {title}  [start method: {method}]", flush=True)
            result = subprocess.run(
                [sys.executable, "-m", f"polyproc._cli.tour.{module}", method],
                timeout=args.timeout,
                check=False,
            )
            if result.returncode != 0:
                failures += 1
                print(f"!!! example {module} failed with exit code {result.returncode}")
    print(f"\n{len(EXAMPLES) * len(methods) - failures} of {len(EXAMPLES) * len(methods)} "
          "tour runs succeeded")
    job_ok = _demo_map_job(args.timeout)
    return 1 if failures or not job_ok else 0


_DEMO_LINES = 20_000
_DEMO_BROKEN_EVERY = 5_000


def _demo_map_job(timeout: float) -> bool:
    """The main job: ``polyproc map`` parsing a generated access log, with its progress
    bar; the malformed lines come back as error records (and exit status 1)."""
    import json
    import tempfile

    from .examples import make_access_log

    print(f"\n=== The main job: polyproc map over a {_DEMO_LINES:,}-line access log", flush=True)
    with tempfile.TemporaryDirectory(prefix="polyproc-demo-") as folder:
        log, out = f"{folder}/access.log", f"{folder}/parsed.jsonl"
        make_access_log(log, _DEMO_LINES, broken_every=_DEMO_BROKEN_EVERY)
        command = ["polyproc", "map", "polyproc._cli.examples:parse_access_log", log,
                   "-o", out, "--progress"]
        print("$", " ".join(command).replace(folder, "$TMP"), flush=True)
        result = subprocess.run([sys.executable, "-m", "polyproc", *command[1:]],
                                timeout=timeout, check=False)
        with open(out, encoding="utf-8") as parsed:
            records = [json.loads(line) for line in parsed]
    errors = [r for r in records if "error" in r]
    statuses: dict[int, int] = {}
    for record in records:
        if "result" in record:
            status = record["result"]["status"]
            statuses[status] = statuses.get(status, 0) + 1
    print(f"{len(records):,} records; HTTP statuses: "
          + ", ".join(f"{code}: {count:,}" for code, count in sorted(statuses.items())))
    for record in errors:
        print(f"  error record: line {record['index']}: {record['error']}")
    expected_errors = _DEMO_LINES // _DEMO_BROKEN_EVERY
    ok = len(records) == _DEMO_LINES and len(errors) == expected_errors and result.returncode == 1
    print("the map job " + ("behaved as expected: every line answered, the malformed ones as "
                            "error records, exit status 1" if ok else "FAILED"))
    return ok


def _info(args: argparse.Namespace) -> int:
    print(f"polyproc {polyproc.__version__} on Python {sys.version.split()[0]}")
    print(f"cpu_count: {polyproc.cpu_count()}")
    print(f"start methods: {', '.join(polyproc.get_all_start_methods())} "
          f"(default {polyproc.get_start_method()})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polyproc`` command."""
    parser = argparse.ArgumentParser(
        prog="polyproc",
        description="polyproc: Python's multiprocessing, rebuilt to never hang.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the seed tour with polyproc as multiprocessing")
    demo.add_argument("--start-method", choices=["fork", "spawn", "forkserver"],
                      help="run under this start method only (default: all of them)")
    demo.add_argument("--timeout", type=float, default=120.0,
                      help="seconds one example may take before it counts as hung")
    demo.set_defaults(func=_demo)
    info = sub.add_parser("info", help="start methods and CPU count of this machine")
    info.set_defaults(func=_info)
    add_map_command(sub)
    add_run_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``polyproc`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        return run_main(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))
