"""Aggregate the outcomes into the compatibility figure, print it, and write it as JSON."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from ._classify import AREAS
from ._runner import ClassReport, TestOutcome

__all__ = ["Row", "Tally", "load_baseline", "print_report", "summarize", "write_json"]

PASSED = frozenset({"pass", "xfail"})
SKIPPED = frozenset({"skip"})


@dataclass
class Row:
    """One test outcome with its classification."""

    outcome: TestOutcome
    area: str
    public: bool
    private_refs: tuple[str, ...]
    qualname: str

    def as_json(self) -> dict[str, Any]:
        """The JSON record of this test (tracebacks only for tests that did not pass)."""
        o = self.outcome
        record: dict[str, Any] = {
            "id": o.id, "method": o.method, "class": o.cls, "test": o.name,
            "qualname": self.qualname, "area": self.area, "public": self.public,
            "private_refs": list(self.private_refs), "outcome": o.outcome, "reason": o.reason,
            "duration": o.duration,
        }
        if o.outcome not in PASSED | SKIPPED and o.traceback:
            record["traceback"] = o.traceback
        return record


@dataclass
class Tally:
    """Passed / failed / skipped counts."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def run(self) -> int:
        """Tests that ran to a verdict (skips excluded)."""
        return self.passed + self.failed

    def add(self, outcome: str) -> None:
        """Count one outcome."""
        if outcome in PASSED:
            self.passed += 1
        elif outcome in SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1

    def cell(self) -> str:
        """``passed/run rate% (N skip)`` for the table."""
        if not self.run and not self.skipped:
            return "-"
        rate = f"{100.0 * self.passed / self.run:5.1f}%" if self.run else "    -"
        return f"{self.passed:>3}/{self.run:<3} {rate} ({self.skipped} skip)"


def summarize(rows: Iterable[Row], public: bool) -> dict[str, dict[str, Tally]]:
    """``{method: {area: Tally}}`` (plus area ``TOTAL``) for public or private tests."""
    table: dict[str, dict[str, Tally]] = {}
    for row in rows:
        if row.public != public:
            continue
        per_method = table.setdefault(row.outcome.method, {})
        per_method.setdefault(row.area, Tally()).add(row.outcome.outcome)
        per_method.setdefault("TOTAL", Tally()).add(row.outcome.outcome)
    return table


def _combined(table: dict[str, dict[str, Tally]], area: str) -> Tally:
    total = Tally()
    for per_method in table.values():
        t = per_method.get(area)
        if t is not None:
            total.passed += t.passed
            total.failed += t.failed
            total.skipped += t.skipped
    return total


def load_baseline(path: Path) -> dict[str, str]:
    """Read ``{test id: outcome}`` from the JSON results of an earlier run (``--json``)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {test["id"]: test["outcome"] for test in data["tests"]}


_PLACEHOLDER_RE = re.compile(r"(\S+) is missing \(harness placeholder\)")


def _methods_label(methods: list[str], all_methods: list[str]) -> str:
    if len(all_methods) > 1 and sorted(methods) == sorted(all_methods):
        return "all methods"
    return ", ".join(methods)


def _print_table(rows: list[Row], methods: list[str], target: str, python: str,
                 out: TextIO) -> None:
    public = summarize(rows, public=True)
    private = summarize(rows, public=False)
    width = 27
    print(f"\nCPython {python} multiprocessing suite against {target}: public-API tests "
          f"passed/run, pass rate (skipped)", file=out)
    header = f"{'area':<15}" + "".join(f"{m:<{width}}" for m in methods) + "all methods"
    print(header, file=out)
    print("-" * len(header), file=out)
    for area in (*AREAS, "TOTAL"):
        if not any(area in per for per in public.values()):
            continue
        cells = [public.get(m, {}).get(area, Tally()).cell() for m in methods]
        line = f"{area:<15}" + "".join(f"{c:<{width}}" for c in cells)
        print(line + _combined(public, area).cell(), file=out)
    cells = [private.get(m, {}).get("TOTAL", Tally()).cell() for m in methods]
    print(f"{'(private)':<15}" + "".join(f"{c:<{width}}" for c in cells)
          + _combined(private, "TOTAL").cell(), file=out)
    print("(private) = tests that use names outside the documented API; not in the figure.",
          file=out)


def _print_failures(rows: list[Row], methods: list[str], out: TextIO) -> None:
    """Failing public tests: those failing on a placeholder summed up by missing name, the
    others one line per test and reason, with the start methods it happened under."""
    failing = [r for r in rows if r.public and r.outcome.outcome not in PASSED | SKIPPED]
    print(f"\nFailing public tests: {len(failing)}", file=out)
    missing: dict[str, list[Row]] = defaultdict(list)
    grouped: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
    for row in failing:
        o = row.outcome
        match = _PLACEHOLDER_RE.search(o.reason)
        if match:
            missing[match[1]].append(row)
        else:
            grouped[(row.area, f"{o.cls}.{o.name}", o.outcome, o.reason)].append(o.method)
    if missing:
        print("  failing on a missing documented name (a harness placeholder stood in):",
              file=out)
        for name, hits in sorted(missing.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            areas = ", ".join(sorted({r.area for r in hits}))
            print(f"    {name}: {len(hits)} test runs ({areas})", file=out)
    for (area, test, outcome, reason), where in sorted(grouped.items()):
        print(f"  [{area}] {test} ({_methods_label(where, methods)})  {outcome}: {reason}",
              file=out)


def _print_extra_skips(rows: list[Row], baseline: dict[str, str], out: TextIO) -> None:
    """A missing feature can turn tests into skips: list the skips the baseline does not have."""
    extra = [r for r in rows if r.public and r.outcome.outcome in SKIPPED
             and baseline.get(r.outcome.id, "skip") not in SKIPPED]
    print(f"\nPublic tests skipped here but run by the baseline: {len(extra)}", file=out)
    for row in sorted(extra, key=lambda r: r.outcome.id):
        print(f"  [{row.area}] {row.outcome.id}  skip: {row.outcome.reason}", file=out)


def _print_class_problems(reports: list[ClassReport], out: TextIO) -> None:
    """Hangs and crashes one per class; fixture errors grouped by their message."""
    troubled = [r for r in reports if r.status != "ok"]
    fixtures: dict[str, list[str]] = defaultdict(list)
    for r in reports:
        for text in r.fixture_errors:
            name, _, rest = text.partition(" (")
            message = rest.partition("): ")[2] or text
            fixtures[f"{name} {message}"].append(f"{r.method}:{r.cls}")
    if not troubled and not fixtures:
        return
    print("\nClasses with hangs, crashes or fixture errors:", file=out)
    for r in troubled:
        print(f"  {r.method}:{r.cls}  {r.status}: {'; '.join(r.notes)}", file=out)
    for message, classes in sorted(fixtures.items()):
        shown = ", ".join(classes[:3]) + (f" and {len(classes) - 3} more" if len(classes) > 3
                                          else "")
        print(f"  {message}  in {shown}", file=out)


def print_report(rows: list[Row], reports: list[ClassReport], *, methods: list[str], target: str,
                 python: str, supplied: list[str], out: TextIO,
                 baseline: dict[str, str] | None = None) -> None:
    """Print the per-area table, the failing public tests, class problems and stand-ins.

    With *baseline* (outcomes of a run against the standard library), also list the public
    tests that were skipped here but not there.
    """
    _print_table(rows, methods, target, python, out)
    _print_failures(rows, methods, out)
    if baseline is not None:
        _print_extra_skips(rows, baseline, out)
    _print_class_problems(reports, out)
    if target != "multiprocessing":
        leaks = sorted(f"{r.method}:{r.cls}" for r in reports if r.stdlib_multiprocessing)
        if leaks:
            print(f"\nWARNING: the standard library's multiprocessing was imported in the test "
                  f"process of {len(leaks)} class(es), e.g. {', '.join(leaks[:3])}", file=out)
    outcomes = Counter(r.outcome.outcome for r in rows)
    print(f"\nAll outcomes: {dict(sorted(outcomes.items()))}", file=out)
    if supplied:
        print(f"\nStand-ins supplied because {target} lacks them:", file=out)
        for line in supplied:
            print(f"  {line}", file=out)
    else:
        print(f"\nStand-ins supplied: none ({target} has every name the suite touches)",
              file=out)


def write_json(path: Path, meta: dict[str, Any], rows: list[Row], reports: list[ClassReport],
               supplied: list[str]) -> None:
    """Write every result, the summary and the class reports to *path*."""
    def tallies(public: bool) -> dict[str, dict[str, dict[str, int]]]:
        return {m: {a: {"passed": t.passed, "failed": t.failed, "skipped": t.skipped,
                        "run": t.run} for a, t in per.items()}
                for m, per in summarize(rows, public).items()}

    data = {
        "meta": meta,
        "standins": supplied,
        "summary": {"public": tallies(True), "private": tallies(False)},
        "classes": [asdict(r) for r in reports],
        "tests": [row.as_json() for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
