"""Command line of the compatibility harness: ``python -m tests.compat --help``.

Exit status: in full mode 0 (the run is a measurement), in ``--quick`` mode 1 if a test of the
quick subset did not pass; 2 on a harness error (no suite, package not installed, bad option).
"""

from __future__ import annotations

import argparse
import fnmatch
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import _quick, _report, _runner, _suite
from ._classify import Classifier, area_of
from ._runner import ClassJob, ClassReport, ListResult, TestOutcome


class HarnessError(Exception):
    """The harness itself cannot run (as opposed to tests failing)."""


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.compat",
        description="Run CPython's own multiprocessing test suite against polyproc (or against "
                    "the standard library, to check the harness) and report the share of "
                    "public-API tests that pass, per area and start method.")
    parser.add_argument("--quick", action="store_true",
                        help="run only the tests listed in tests/compat/quick_expected.txt and "
                             "fail if any of them does not pass")
    parser.add_argument("--update-quick", action="store_true",
                        help="regenerate quick_expected.txt from the public tests of the quick "
                             "classes that pass in every one of --rounds runs")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs used by --update-quick (default: 2)")
    parser.add_argument("--methods", default=",".join(_suite.ALL_METHODS),
                        help="comma-separated start methods (default: fork,spawn,forkserver)")
    parser.add_argument("--target", default="polyproc",
                        help="package to test (default: polyproc); 'multiprocessing' runs the "
                             "suite unchanged against the standard library, a sanity check")
    parser.add_argument("--classes", default="",
                        help="comma-separated fnmatch patterns on 'Class' or 'Class.test'")
    parser.add_argument("--jobs", type=int, default=1,
                        help="classes run at a time (default: 1; 2 makes timing tests flaky)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds allowed to each worker process (default: 120)")
    parser.add_argument("--max-restarts", type=int, default=2,
                        help="new workers started for a class after a hang or crash (default: 2)")
    parser.add_argument("--json", type=Path, help="write the full results to this file")
    parser.add_argument("--baseline", type=Path,
                        help="JSON results of a run against the standard library (--target "
                             "multiprocessing --json PATH): list the public tests skipped here "
                             "but not there, since a missing feature can turn failures into "
                             "skips")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (rewritten suite and worker logs)")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = set(args.methods) - set(_suite.ALL_METHODS)
    if unknown or not args.methods:
        parser.error(f"unknown start method(s): {', '.join(sorted(unknown)) or '(none)'}")
    if args.quick and args.update_quick:
        parser.error("--quick and --update-quick are exclusive")
    args.patterns = [p for p in args.classes.split(",") if p]
    return args


def _selected(cls: str, test: str, patterns: list[str]) -> bool:
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(cls, p) or fnmatch.fnmatchcase(f"{cls}.{test}", p)
               for p in patterns)


def _print(text: str = "") -> None:
    print(text, flush=True)


def _progress_printer(total: int) -> _runner.ProgressCallback:
    done = [0]

    def progress(job: ClassJob, outcomes: list[TestOutcome], report: ClassReport) -> None:
        done[0] += 1
        counts = {k: sum(1 for o in outcomes if o.outcome in v) for k, v in (
            ("pass", _report.PASSED), ("skip", _report.SKIPPED))}
        bad = len(outcomes) - counts["pass"] - counts["skip"]
        status = "" if report.status == "ok" else f"  [{report.status}]"
        _print(f"[{done[0]:>3}/{total}] {job.method:<10} {job.cls:<40} "
               f"{len(outcomes):>3} tests {counts['pass']:>3} pass {bad:>3} fail/error "
               f"{counts['skip']:>3} skip {report.duration:>6.1f} s{status}")

    return progress


def _listings(tree: _suite.Tree, methods: list[str], logs: Path) -> dict[str, ListResult]:
    listings = {}
    for method in methods:
        listing = _runner.list_tests(tree, method, logs)
        if listing.error:
            _print(f"compat: the suite does not import under {tree.target} ({method}):")
            _print("    " + "\n    ".join(listing.error.strip().splitlines()[-12:]))
        listings[method] = listing
    return listings


def _reference_listing(files: _suite.SuiteFiles, root: Path, method: str,
                       logs: Path) -> ListResult:
    """List the tests with the standard library when the target cannot even import the suite."""
    tree = _suite.prepare(root / "reference", files, "multiprocessing")
    return _runner.list_tests(tree, method, logs)


def _jobs_for(listings: dict[str, ListResult], wanted: set[str] | None,
              patterns: list[str]) -> list[ClassJob]:
    jobs = []
    for method, listing in listings.items():
        for cls, tests in sorted(listing.classes.items()):
            names = tuple(name for name, _ in tests
                          if _selected(cls, name, patterns)
                          and (wanted is None or f"{method}:{cls}.{name}" in wanted))
            if names:
                jobs.append(ClassJob(method, cls, names))
    return jobs


def _rows(results: list[tuple[ClassJob, list[TestOutcome], ClassReport]],
          listings: dict[str, ListResult], classifier: Classifier) -> list[_report.Row]:
    rows = []
    for _job, outcomes, _class_report in results:
        for o in outcomes:
            qualname = dict(listings[o.method].classes.get(o.cls, [])).get(o.name, "")
            verdict = classifier.classify(o.cls, qualname)
            rows.append(_report.Row(o, area_of(o.cls), verdict.public, verdict.private_refs,
                                    qualname))
    return rows


def _public_quick_ids(listings: dict[str, ListResult], classifier: Classifier) -> set[str]:
    ids = set()
    for method, listing in listings.items():
        for cls in _quick.QUICK_CLASSES:
            for name, qualname in listing.classes.get(cls, []):
                if classifier.classify(cls, qualname).public:
                    ids.add(f"{method}:{cls}.{name}")
    return ids


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        files = _suite.locate()
        _suite.target_search_path(args.target)
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise HarnessError(str(exc)) from exc
    expected: list[str] = []
    if args.quick:
        try:
            expected = _quick.read_expected()
            for test_id in expected:
                _quick.parse_id(test_id)
        except ValueError as exc:
            raise HarnessError(f"{_quick.EXPECTED_FILE}: {exc}") from exc
        expected = [t for t in expected if _quick.parse_id(t)[0] in args.methods]
        if not expected:
            _print(f"compat --quick: {_quick.EXPECTED_FILE.name} lists no test for "
                   f"{','.join(args.methods)}; nothing to run")
            return 0
    root = Path(tempfile.mkdtemp(prefix="polyproc-compat-"))
    try:
        return _measure(args, files, root, expected, started)
    finally:
        if args.keep:
            _print(f"compat: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _measure(args: argparse.Namespace, files: _suite.SuiteFiles, root: Path,
             expected: list[str], started: float) -> int:
    try:
        baseline = _report.load_baseline(args.baseline) if args.baseline else None
    except (OSError, ValueError, KeyError) as exc:
        raise HarnessError(f"cannot read --baseline {args.baseline}: {exc}") from exc
    tree = _suite.prepare(root / "suite", files, args.target)
    logs = root / "logs"
    logs.mkdir()
    _print(f"compat: CPython suite {files.suite} against {args.target}, methods "
           f"{','.join(args.methods)}")
    listings = _listings(tree, args.methods, logs)
    classifier = Classifier(tree.suite_source)
    import_failed = {m for m, listing in listings.items() if listing.error}
    for method in import_failed:
        listings[method] = _reference_listing(files, root, method, logs)
    if args.update_quick:
        wanted: set[str] | None = _public_quick_ids(listings, classifier)
    elif args.quick:
        wanted = set(expected)
    else:
        wanted = None
    jobs = _jobs_for(listings, wanted, args.patterns)
    if not jobs and not args.quick:
        raise HarnessError(f"no test matches --classes {args.classes!r}")
    rounds = args.rounds if args.update_quick else 1
    results: list[tuple[ClassJob, list[TestOutcome], ClassReport]] = []
    passing: set[str] | None = None
    slow: set[str] = set()
    for round_ in range(rounds):
        if rounds > 1:
            _print(f"compat: round {round_ + 1} of {rounds}")
        runnable = [j for j in jobs if j.method not in import_failed]
        results = _runner.run_classes(tree, runnable, logs, timeout=args.timeout,
                                      max_restarts=args.max_restarts, parallel=args.jobs,
                                      progress=_progress_printer(len(runnable)))
        results += _not_importable(jobs, import_failed, listings)
        now = {o.id for _, outs, _ in results for o in outs if o.outcome in _report.PASSED}
        passing = now if passing is None else passing & now
        slow |= {o.id for _, outs, _ in results for o in outs
                 if o.duration > _quick.MAX_TEST_SECONDS}
    rows = _rows(results, listings, classifier)
    reports = [r for _, _, r in results]
    supplied = sorted({s for r in reports for s in r.supplied}
                      | {s for listing in listings.values() for s in listing.supplied})
    python = platform.python_version()
    _report.print_report(rows, reports, methods=args.methods, target=args.target, python=python,
                         supplied=supplied, out=sys.stdout, baseline=baseline)
    elapsed = time.monotonic() - started
    _print(f"\ncompat: {len(rows)} tests in {elapsed:.0f} s")
    if args.json:
        meta = {"target": args.target, "python": sys.version, "suite": str(files.suite),
                "methods": args.methods,
                "mode": "quick" if args.quick else "update-quick" if args.update_quick else "full",
                "classes": args.classes, "finished": datetime.now(UTC).isoformat(),
                "duration_s": round(elapsed, 1), "timeout_s": args.timeout, "jobs": args.jobs,
                "baseline": str(args.baseline) if args.baseline else None}
        _report.write_json(args.json, meta, rows, reports, supplied)
        _print(f"compat: wrote {args.json}")
    if args.update_quick:
        ids = sorted(i for i in (passing or set()) - slow
                     if i.partition(":")[2] not in _quick.EXCLUDED)
        _quick.write_expected(ids, args.target)
        _print(f"compat: wrote {len(ids)} test ids to {_quick.EXPECTED_FILE} (left out "
               f"{len((passing or set()) & slow)} passing tests slower than "
               f"{_quick.MAX_TEST_SECONDS} s)")
        return 0
    if args.quick:
        return _quick_verdict(rows, expected)
    return 0


def _not_importable(jobs: list[ClassJob], import_failed: set[str],
                    listings: dict[str, ListResult],
                    ) -> list[tuple[ClassJob, list[TestOutcome], ClassReport]]:
    """Results for the methods under which the suite did not import: every test errors."""
    results = []
    for job in jobs:
        if job.method not in import_failed:
            continue
        reason = "suite import failed under the target (see the listing error above)"
        outcomes = [TestOutcome(job.method, job.cls, name, "error", reason) for name in job.tests]
        report = ClassReport(job.method, job.cls, status="crash", notes=[reason])
        results.append((job, outcomes, report))
    return results


def _quick_verdict(rows: list[_report.Row], expected: list[str]) -> int:
    got = {row.outcome.id: row.outcome for row in rows}
    bad = []
    for test_id in expected:
        outcome = got.get(test_id)
        if outcome is None:
            bad.append(f"{test_id}: not found in the suite")
        elif outcome.outcome not in _report.PASSED:
            bad.append(f"{test_id}: {outcome.outcome}: {outcome.reason}")
    passed = len(expected) - len(bad)
    _print(f"\ncompat --quick: {passed} passed, {len(bad)} failed")
    for line in bad:
        _print(f"  {line}")
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the harness; see the module docstring for the exit status."""
    args = _parse_args(argv)
    try:
        return _run(args)
    except HarnessError as exc:
        print(f"compat: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
