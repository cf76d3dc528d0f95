"""Command-line entry point: ``polyproc [demo|info]``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import polyproc

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
    return 1 if failures else 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``polyproc`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
