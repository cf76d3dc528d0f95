"""Command line: ``python -m benchmarks [--quick] [--only NAME] [--repeats N] [--markdown PATH]``.

The table goes to stdout, progress to stderr. The exit status is 1 if the standard library
itself failed a benchmark (the harness is broken), or with ``--strict`` if any implementation
failed; a library that is missing or lacks a feature is only reported as skipped.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks import _report, _runner
from benchmarks._runner import Benchmark


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="polyproc against multiprocessing and its peers, interleaved in one run.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and 3 repeats: a smoke test, not a measurement")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only the benchmarks matching NAME (a glob; repeatable)")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="interleaved repeats of each benchmark (default 5, quick 3)")
    parser.add_argument("--libraries", metavar="A,B",
                        help=f"libraries to measure (default {','.join(_runner.LIBRARIES)}); "
                             f"{_runner.REFERENCE} is always included")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="limit for one measurement subprocess (default 300, quick 60)")
    parser.add_argument("--markdown", type=Path, metavar="PATH",
                        help="also write the results as a markdown section to PATH")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write every sample as JSON to PATH")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any implementation fails (not merely skipped)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def select(benchmarks: list[Benchmark], patterns: list[str] | None) -> list[Benchmark]:
    """The benchmarks whose name matches one of *patterns* (all of them without patterns)."""
    if not patterns:
        return benchmarks
    return [b for b in benchmarks if any(fnmatch.fnmatchcase(b.name, p) for p in patterns)]


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks and print the report."""
    args = parse_args(argv)
    everything = _runner.discover()
    if args.list:
        for b in everything:
            print(f"{b.name:24}  {b.title}")
        return 0
    chosen = select(everything, args.only)
    if not chosen:
        known = ", ".join(b.name for b in everything)
        print(f"no benchmark matches {args.only}; there are: {known}", file=sys.stderr)
        return 2
    wanted = args.libraries.split(",") if args.libraries else list(_runner.LIBRARIES)
    names = [_runner.REFERENCE, *(n for n in wanted if n and n != _runner.REFERENCE)]
    implementations = _runner.libraries(names)
    repeats = args.repeats or (3 if args.quick else 5)
    timeout = args.timeout or (60.0 if args.quick else 300.0)
    mode = f"{'quick' if args.quick else 'full'}, {repeats} repeats"
    info = _report.run_info(implementations, mode=mode)
    load_before = _report.load_average()

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results = [
        _runner.run_benchmark(b, implementations, repeats=repeats, quick=args.quick,
                              timeout=timeout, progress=progress)
        for b in chosen
    ]
    info.load = f"{load_before} before, {_report.load_average()} after"
    print(_report.text_report(info, results))
    if args.markdown:
        args.markdown.write_text(_report.markdown_report(info, results), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(dump(info, results), indent=1), encoding="utf-8")
    failed = [(r.benchmark.name, s.implementation.label) for r in results for s in r.series
              if s.status == "error"]
    # Skipped is not failed: a benchmark of a polyproc extension has no stdlib row to run.
    reference_failed = any(s.implementation.label == _runner.REFERENCE and s.status == "error"
                           for r in results for s in r.series)
    return 1 if reference_failed or (args.strict and failed) else 0


def dump(info: _report.RunInfo, results: list[_runner.Result]) -> dict[str, object]:
    """Every sample and note, for later analysis."""
    return {
        "info": asdict(info),
        "benchmarks": [
            {
                "name": r.benchmark.name,
                "title": r.benchmark.title,
                "unit": r.benchmark.unit,
                "higher_is_better": r.benchmark.higher_is_better,
                "reference": r.benchmark.reference,
                "series": [
                    {"implementation": s.implementation.label, "status": s.status,
                     "note": s.note, "repeats": s.repeats}
                    for s in r.series
                ],
            }
            for r in results
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
