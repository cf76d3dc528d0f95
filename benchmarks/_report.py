"""Reports: the machine header, a plain text table, and a markdown section for BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field

from benchmarks._runner import (
    PROJECT_ROOT,
    REFERENCE,
    Implementation,
    Result,
    Series,
    Summary,
    summarize,
)


@dataclass
class RunInfo:
    """What the header says about the machine and the run."""

    cpu: str
    cores: str
    memory: str
    system: str
    python: str
    date: str
    commit: str
    mode: str
    libraries: list[str] = field(default_factory=list)
    load: str = ""


def _read_first(path: str, key: str) -> str:
    """The value of the first ``key: value`` line of *path*, or an empty string."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return ""


def _git_commit() -> str:
    """The short commit of the checkout holding the benchmarks, with ``+dirty`` if changed."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), *args],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def run_info(implementations: list[Implementation], *, mode: str) -> RunInfo:
    """Describe this machine and the libraries under test."""
    memory_kb = _read_first("/proc/meminfo", "MemTotal").split()[:1]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return RunInfo(
        cpu=_read_first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        cores=f"{os.cpu_count()} logical cores" + (f" ({usable} usable)" if usable else ""),
        memory=f"{int(memory_kb[0]) / 2**20:.0f} GiB" if memory_kb else "unknown",
        system=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {sys.version.split()[0]}",
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=_git_commit(),
        mode=mode,
        libraries=[
            f"{impl.label} {impl.missing or impl.version}".rstrip() for impl in implementations
        ],
    )


def load_average() -> str:
    """The 1-minute load average, as text."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


# --- formatting ------------------------------------------------------------------------------


def number(value: float) -> str:
    """A measurement with about three significant digits, never in scientific notation."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


COLUMNS = ("implementation", "median", "p10", "p90", "samples", "vs stdlib", "ratio range")


def columns(result: Result) -> list[str]:
    """The column titles of one table: the ratio column names a reference other than stdlib."""
    reference = result.benchmark.reference
    return [f"vs {reference}" if c == "vs stdlib" and reference != REFERENCE else c
            for c in COLUMNS]


def _row(series: Series, summary: Summary | None) -> list[str]:
    """The cells of one table row."""
    label = series.implementation.label
    if summary is None:
        note = " ".join((series.note or series.status).split())
        if len(note) > 160:
            note = note[:157] + "..."
        return [label, "-", "-", "-", "-", "-", f"{series.status}: {note}"]
    per_repeat, extra = divmod(summary.count, summary.repeats)
    samples = f"{summary.repeats}x{per_repeat}" if not extra else str(summary.count)
    if summary.ratio is None:
        ratio = spread = "n/a"
    else:
        ratio = f"{summary.ratio:.2f}x"
        spread = f"{summary.ratio_low:.2f}..{summary.ratio_high:.2f}"
    return [label, number(summary.median), number(summary.p10), number(summary.p90), samples,
            ratio, spread]


def rows(result: Result) -> list[list[str]]:
    """The table rows of one benchmark, one per implementation or baseline."""
    reference = result.reference
    return [_row(s, summarize(s, reference)) for s in result.series]


def explanation(result: Result) -> str:
    """The line under a benchmark's title: unit and direction."""
    b = result.benchmark
    return f"unit: {b.unit}; {b.direction}, for the values and for the ratio vs {b.reference}"


def header_lines(info: RunInfo) -> list[str]:
    """The machine and run description, one fact per line."""
    return [
        f"machine: {info.cpu}, {info.cores}, {info.memory} memory, {info.system}",
        f"python: {info.python}; date: {info.date}; polyproc checkout: {info.commit}",
        f"libraries: {'; '.join(info.libraries)}",
        f"run: {info.mode}; load average (1 min) {info.load}",
        "method: each measurement in a fresh subprocess, implementations interleaved "
        "round-robin per repeat; median and p10/p90 over all samples; ratio = median over "
        f"repeats of (implementation ÷ {REFERENCE}, same repeat), range = min..max; a "
        "benchmark the stdlib cannot run takes its ratios against the row it names",
    ]


def text_report(info: RunInfo, results: list[Result]) -> str:
    """Everything as plain text: header, then one aligned table per benchmark."""
    out = [*header_lines(info), ""]
    for result in results:
        table = [columns(result), *rows(result)]
        aligned = [cells for cells in table if cells[1] != "-"]  # skipped rows just say why
        widths = [max(len(cells[i]) for cells in aligned) for i in range(len(COLUMNS))]
        out.append(f"{result.benchmark.name}: {result.benchmark.title}")
        out.append(f"  {explanation(result)}")
        for cells in table:
            if cells[1] == "-":
                out.append(f"  {cells[0].ljust(widths[0])}  {cells[-1]}")
                continue
            padded = [cells[0].ljust(widths[0])]
            padded += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
            padded.append(cells[-1])
            out.append("  " + "  ".join(padded).rstrip())
        out.append("")
    return "\n".join(out)


def _sentence(text: str) -> str:
    """*text* with its first letter capitalized (``str.capitalize`` lowers the rest: labels)."""
    return text[:1].upper() + text[1:]


def markdown_report(info: RunInfo, results: list[Result]) -> str:
    """A markdown section to paste into BENCHMARKS.md."""
    out = [f"## Results of {info.date}", ""]
    out += [f"- {line}" for line in header_lines(info)]
    out.append("")
    for result in results:
        b = result.benchmark
        out += [f"### {b.name}", "", f"{b.title}. {_sentence(explanation(result))}.", ""]
        out.append("| " + " | ".join(columns(result)) + " |")
        out.append("|---|" + "---:|" * (len(COLUMNS) - 2) + "---|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                for cells in rows(result)]
        out.append("")
    return "\n".join(out)
