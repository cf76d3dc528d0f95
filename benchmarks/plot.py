"""A PNG of Pool results: ``python -m benchmarks.plot RESULTS.json [MORE.json ...] OUT.png``.

The inputs are files written by ``python -m benchmarks --json PATH``; when a benchmark is in
several, the last file wins, so separate runs (``--only 'pool-*'`` now, the array workloads
later) can be drawn together. Two panels, one group of bars per benchmark and one bar per
library or baseline, each bar the median over all samples with a p10..p90 whisker and, above
it, the paired ratio against the standard library that the tables show:

* tiny tasks: ``pool-map-tiny``, ``pool-imap-chunk1``, ``pool-apply-async-5000`` and
  ``pool-one-at-a-time``, in operations per second on a log scale; the round trip times of
  ``pool-one-at-a-time`` are turned into round trips per second, so that in the whole panel
  higher is better and every ratio reads as a speed (above 1: faster than the stdlib);
* big arrays: ``pool-arrays-in`` and ``pool-arrays-out``, in GB/s.

A library that failed or was skipped gets no bar, but its name is written where the bar would
be, with ``error`` or ``skipped``. Benchmarks missing from the inputs are left out; a panel
with none of its benchmarks says so. matplotlib (with its non-interactive Agg backend) is
imported by `main` only, so that importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks._runner import REFERENCE, Implementation, Series, summarize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

#: (name, label under its group of bars) of the tiny-task panel, in order.
TINY_TASKS = (
    ("pool-map-tiny", "map, 200,000 ints\ndefault chunking"),
    ("pool-imap-chunk1", "imap_unordered, 20,000 ints\nchunksize=1"),
    ("pool-apply-async-5000", "5,000 apply_async\nthen get()"),
    ("pool-one-at-a-time", "one task at a time\napply_async().get()"),
)
#: The same for the big-array panel.
BIG_ARRAYS = (
    ("pool-arrays-in", "16 x 8 MB arrays in\nmap(first_plus_last, arrays)"),
    ("pool-arrays-out", "16 x 8 MB arrays out\nmap(fresh_array, range(16))"),
)
#: Colours of the rows that matter most; the others take `OTHER_COLORS` in order of appearance.
FIXED_COLORS = {REFERENCE: "#8c8c8c", "polyproc": "#1f5fa8", "polyproc PoolExecutor": "#8fb8e0"}
OTHER_COLORS = ("#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                "#17becf", "#555555", "#f5c542")


@dataclass(frozen=True)
class Bar:
    """One bar: a library's median and p10/p90, its ratio to the stdlib, or why it is absent."""

    label: str
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    ratio: float | None = None
    missing: str = ""


def load(paths: list[Path]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The run description of the last file and every benchmark by name (last file wins)."""
    info: dict[str, Any] = {}
    benchmarks: dict[str, dict[str, Any]] = {}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        info = data["info"]
        benchmarks.update({b["name"]: b for b in data["benchmarks"]})
    return info, benchmarks


def _as_rate(benchmark: dict[str, Any]) -> bool:
    """Whether the samples are times per operation in µs, to be drawn as operations/s."""
    unit: str = benchmark["unit"]
    return not benchmark["higher_is_better"] and unit.startswith("µs per ")


def bars(benchmark: dict[str, Any]) -> list[Bar]:
    """The bars of one benchmark, in the order of its series (the runner's round robin)."""
    convert = _as_rate(benchmark)
    series = []
    for s in benchmark["series"]:
        repeats = [[1e6 / x for x in rep] if rep and convert else rep for rep in s["repeats"]]
        series.append(Series(Implementation(s["implementation"], None), repeats, s["status"],
                             s["note"]))
    reference = next((s for s in series
                      if s.implementation.label == REFERENCE and s.status == "ok"), None)
    found = []
    for s in series:
        summary = summarize(s, reference)
        if summary is None:
            found.append(Bar(s.implementation.label, missing=s.status))
        else:
            found.append(Bar(s.implementation.label, summary.median, summary.p10, summary.p90,
                             summary.ratio))
    return found


def colors_for(labels: list[str]) -> dict[str, str]:
    """A colour per label, the same in both panels."""
    colors = {label: FIXED_COLORS[label] for label in labels if label in FIXED_COLORS}
    others = [label for label in labels if label not in FIXED_COLORS]
    for index, label in enumerate(others):
        colors[label] = OTHER_COLORS[index % len(OTHER_COLORS)]
    return colors


def ratio_text(bar: Bar) -> str:
    """The label above a bar: its ratio to the stdlib, two significant digits when tiny."""
    if bar.label == REFERENCE:
        return "ref"
    if bar.ratio is None:
        return "n/a"
    return f"{bar.ratio:.2f}x" if bar.ratio >= 0.1 else f"{bar.ratio:.2g}x"


def unit_of(benchmark: dict[str, Any]) -> str:
    """The unit the panel shows for *benchmark*."""
    if _as_rate(benchmark):
        return str(benchmark["unit"]).replace("µs per ", "") + "s per second"
    return str(benchmark["unit"])


def draw_panel(ax: Axes, groups: list[tuple[str, list[Bar]]], colors: dict[str, str], *,
               title: str, ylabel: str, log: bool) -> None:
    """Grouped bars on *ax*: one group per benchmark, one bar per library, ratios on top."""
    ax.set_title(title, fontsize=11, loc="left")
    if not groups:
        ax.text(0.5, 0.5, "none of these benchmarks is in the results", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    width = 0.85 / max(len(group) for _, group in groups)
    tops = [b.p90 or b.median or 0.0 for _, group in groups for b in group]
    floor = min((b.median for _, g in groups for b in g if b.median), default=1.0)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, max(tops) * 6)
    else:
        ax.set_ylim(0, max(tops) * 1.3)
    for index, (_, group) in enumerate(groups):
        left = index - width * (len(group) - 1) / 2
        for position, bar in enumerate(group):
            x = left + position * width
            if bar.median is None:
                base = floor / 2.5 if log else 0.0
                ax.text(x, base, f" {bar.label}: {bar.missing}", rotation=90, ha="center",
                        va="bottom", fontsize=6.5, color="firebrick")
                continue
            polyproc = bar.label.startswith("polyproc")
            ax.bar(x, bar.median, width * 0.92, color=colors[bar.label],
                   edgecolor="black" if polyproc else "none", linewidth=1.2,
                   label=bar.label)
            if bar.p10 is not None and bar.p90 is not None:
                ax.vlines(x, bar.p10, bar.p90, color="black", linewidth=0.8)
            top = max(bar.median, bar.p90 or 0.0)
            ax.text(x, top * 1.08 if log else top + max(tops) * 0.02, ratio_text(bar),
                    rotation=90, ha="center", va="bottom", fontsize=7,
                    fontweight="bold" if polyproc else "normal")
    ax.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=8.5)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_axisbelow(True)


def main(argv: list[str] | None = None) -> int:
    """Read the results, draw both panels, write the PNG."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plot",
        description="Draw the Pool tiny-task and big-array results of `python -m benchmarks "
                    "--json` as a PNG.",
    )
    parser.add_argument("results", type=Path, nargs="+", metavar="RESULTS.json",
                        help="files written by --json; for a benchmark in several, the last")
    parser.add_argument("output", type=Path, metavar="OUT.png", help="the PNG to write")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info, benchmarks = load(args.results)
    panels = []
    for wanted in (TINY_TASKS, BIG_ARRAYS):
        panels.append([(label, bars(benchmarks[name])) for name, label in wanted
                       if name in benchmarks])
    labels = [b.label for panel in panels for _, group in panel for b in group]
    colors = colors_for(list(dict.fromkeys(labels)))

    fig, (tiny, arrays) = plt.subplots(2, 1, figsize=(15, 11), height_ratios=(3, 2))
    tiny_units = sorted({unit_of(benchmarks[n]) for n, _ in TINY_TASKS if n in benchmarks})
    draw_panel(tiny, panels[0], colors, log=True,
               title="Tiny tasks (2 workers, fork, start-up excluded): higher is better; "
                     "labels: speed vs multiprocessing, same repeat",
               ylabel=" or ".join(tiny_units) + " (log scale)")
    array_units = sorted({unit_of(benchmarks[n]) for n, _ in BIG_ARRAYS if n in benchmarks})
    draw_panel(arrays, panels[1], colors, log=False,
               title="Big numpy arrays (2 workers, fork, start-up excluded): higher is "
                     "better; labels: throughput vs multiprocessing, same repeat",
               ylabel=" or ".join(array_units))
    handles: dict[str, Artist] = {}
    for ax in (tiny, arrays):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="upper right", fontsize=8,
               ncols=min(len(handles), 6) or 1, frameon=False)
    fig.suptitle(
        f"polyproc Pool vs multiprocessing and peers; bars: median, whiskers: p10..p90\n"
        f"{info.get('cpu', '?')}, {info.get('cores', '?')}; {info.get('python', '?')}; "
        f"{info.get('date', '?')}; checkout {info.get('commit', '?')}; {info.get('mode', '?')}",
        x=0.01, ha="left", fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(args.output, dpi=110)
    plt.close(fig)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
