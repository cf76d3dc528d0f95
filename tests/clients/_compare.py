"""Compare one client's two runs and print the tier's table."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from . import differences
from ._harness import IMPLEMENTATIONS, Result, Run, regressions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .docs import DocsExamples
    from .suites import ConcurrentFutures, PytestSuite, UnittestSuite

    Client = DocsExamples | PytestSuite | UnittestSuite | ConcurrentFutures


@dataclass
class ClientReport:
    """A client's outcome: both runs, the differences confirmed by a second polyproc run,
    and the ones that did not come back on that run (flaky)."""

    name: str
    source: str
    runs: dict[str, Run]
    variants: dict[str, str]  # test id -> variant (start method)
    confirmed: dict[str, str] = field(default_factory=dict)  # id -> why
    flaky: dict[str, str] = field(default_factory=dict)

    def unexpected(self) -> dict[str, str]:
        """Confirmed differences not listed in differences.BY_DESIGN."""
        return {i: why for i, why in self.confirmed.items()
                if differences.reason(self.name, i) is None}


def compare(client: Client, *, quick: bool, log_dir: Path, jobs: int = 1) -> ClientReport:
    """Run *client* on both implementations (*jobs* at once), then run the tests that
    passed on the standard library only once more on polyproc, to tell a real difference
    from a timing accident."""
    client.prepare()
    log_dir.mkdir(parents=True, exist_ok=True)
    safe = client.name.replace(".", "-")

    def one(implementation: str) -> Run:
        return client.run(implementation, quick=quick,
                          log=log_dir / f"{safe}.{implementation}.log")

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, 2))) as pool:
        runs = dict(zip(IMPLEMENTATIONS, pool.map(one, IMPLEMENTATIONS), strict=True))
    found = regressions(runs["stdlib"].results, runs["polyproc"].results)
    report = ClientReport(client.name, client.source, runs,
                          {i: client.variant(i) for i in runs["stdlib"].results})
    if found:
        again = client.run("polyproc", quick=quick, only=sorted(found),
                           log=log_dir / f"{safe}.polyproc-rerun.log").results
        still = regressions({i: runs["stdlib"].results[i] for i in found}, again)
        report.confirmed = {i: found[i] for i in still}
        report.flaky = {i: found[i] for i in found if i not in still}
    return report


def table(reports: list[ClientReport]) -> str:
    """Pass counts per client and variant, polyproc beside the standard library."""
    rows = [("client", "start method", "tests", "stdlib passed", "polyproc passed",
             "differences")]
    for report in reports:
        by_variant: dict[str, list[str]] = {}
        for test_id in sorted(set(report.runs["stdlib"].results)
                              | set(report.runs["polyproc"].results)):
            by_variant.setdefault(report.variants.get(test_id, "-"), []).append(test_id)
        for variant in sorted(by_variant, key=_method_order):
            ids = by_variant[variant]
            rows.append((
                report.name, variant, str(len(ids)),
                str(_passed(report.runs["stdlib"].results, ids)),
                str(_passed(report.runs["polyproc"].results, ids)),
                str(sum(i in report.confirmed for i in ids)),
            ))
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < 2 else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def details(reports: list[ClientReport]) -> str:
    """Sources, times, then every test that passes on the standard library and not on
    polyproc (by design ones marked), and the flaky ones."""
    out = []
    for report in reports:
        stdlib, polyproc = report.runs["stdlib"], report.runs["polyproc"]
        out.append(f"\n{report.name} ({report.source}): stdlib {stdlib.seconds:.0f} s, "
                   f"polyproc {polyproc.seconds:.0f} s")
        for implementation in IMPLEMENTATIONS:
            out.extend(f"  note ({implementation}): {note}"
                       for note in report.runs[implementation].notes)
        for test_id, why in report.confirmed.items():
            design = differences.reason(report.name, test_id)
            mark = f"  [by design: {design}]" if design else ""
            out.append(f"  FAILS ON POLYPROC {test_id}: {why}{mark}")
        out.extend(f"  flaky (passed on the rerun) {i}: {why}" for i, why in report.flaky.items())
    return "\n".join(out)


def _passed(results: dict[str, Result], ids: list[str]) -> int:
    return sum(results[i].outcome == "passed" for i in ids if i in results)


def _method_order(variant: str) -> tuple[int, str]:
    order = ["fork", "forkserver", "spawn"]
    return (order.index(variant) if variant in order else len(order), variant)
