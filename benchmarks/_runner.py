"""The generic machinery: benchmark specs, interleaved repeats, isolation, statistics.

Isolation: every measurement (one benchmark, one implementation, one repeat) runs in a fresh
``python -m benchmarks._worker`` subprocess, in a session of its own. A library's imports,
threads (resource tracker, forkserver, helper threads), signal handlers and at-fork hooks thus
never touch another library's measurement, and neither do its leftovers from an earlier
repeat. Nothing here imports a library under test: the parent only asks
``importlib.util.find_spec`` whether one is installed, and ``importlib.metadata`` its version.
A worker that hangs is killed with its whole process group after ``timeout`` seconds; after a
worker ends, whatever is left in its session (a fork server or resource tracker on its way out,
an orphan of a buggy library) is killed too, so that it cannot disturb the next measurement.

Interleaving: within one benchmark, repeat *r* runs every implementation once, in a fixed
round-robin order (stdlib, polyproc, multiprocess, billiard, then the baselines), before
repeat *r + 1* starts. Slow drifts of a shared, noisy machine thus hit all implementations
alike, and each repeat is a matched set taken within seconds. The order is the same in every
repeat; since each worker starts from a fresh interpreter, what one implementation leaves to
the next is only the state of the machine (caches, clock speed, other tenants).

Statistics: a measurement returns many samples (one per operation or batch). The median and
the 10th/90th percentiles are taken over the samples of all repeats pooled. The ratio against
the standard library is paired: for each repeat, the implementation's median divided by the
standard library's median *of the same repeat*; the table gives the median of those ratios
and their range over the repeats. Only ratios mean anything on a shared machine. A benchmark
that the standard library cannot run (a Dask cluster, a command line) names another row as
its ``reference`` (a library or a baseline label), and its ratios are taken against that row.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import pkgutil
import select
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The reference ratios are taken against, unless a benchmark names another row.
REFERENCE = "multiprocessing"
#: Libraries measured, in round-robin order; those not installed are skipped.
LIBRARIES = ("multiprocessing", "polyproc", "multiprocess", "billiard")
#: The folder that holds the ``benchmarks`` package, put on the workers' ``sys.path``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: a function measured for every implementation, plus optional baselines.

    ``measure(mod, **params)`` receives the imported library; each baseline is called as
    ``baseline(**params)``. Both must be module-level functions (the worker imports them by
    name) and return a list of samples in ``unit``. ``reference`` is the label of the row the
    ratios are taken against: the standard library unless it cannot run the benchmark.
    """

    name: str
    title: str
    unit: str
    higher_is_better: bool
    measure: Callable[..., list[float]]
    params: Mapping[str, Any]
    quick_params: Mapping[str, Any]
    baselines: Mapping[str, Callable[..., list[float]]] = field(default_factory=dict)
    reference: str = REFERENCE

    @property
    def direction(self) -> str:
        """``higher is better`` or ``lower is better``."""
        return "higher is better" if self.higher_is_better else "lower is better"


@dataclass(frozen=True)
class Implementation:
    """A library under test (``module`` set) or a baseline without one (``module`` None)."""

    label: str
    module: str | None
    version: str = ""
    missing: str = ""  # why it cannot run at all, e.g. "not installed"


@dataclass
class Series:
    """What one implementation gave in one benchmark: samples per repeat, or why not."""

    implementation: Implementation
    repeats: list[list[float] | None] = field(default_factory=list)
    status: str = "ok"  # ok, skipped or error
    note: str = ""

    @property
    def samples(self) -> list[float]:
        """All samples of all repeats that succeeded."""
        return [x for rep in self.repeats if rep for x in rep]

    @property
    def repeat_medians(self) -> list[float | None]:
        """The median of each repeat, ``None`` for a repeat that did not run."""
        return [statistics.median(rep) if rep else None for rep in self.repeats]


@dataclass
class Result:
    """All series of one benchmark, with the statistics the reports show."""

    benchmark: Benchmark
    series: list[Series]

    @property
    def reference(self) -> Series | None:
        """The series of the benchmark's reference (the standard library's), if it ran."""
        for s in self.series:
            if s.implementation.label == self.benchmark.reference and s.status == "ok":
                return s
        return None


@dataclass(frozen=True)
class Summary:
    """The numbers of one table row."""

    median: float
    p10: float
    p90: float
    count: int
    repeats: int
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None


def summarize(series: Series, reference: Series | None) -> Summary | None:
    """Median, p10/p90 over pooled samples, and the paired ratio to *reference*."""
    samples = series.samples
    if series.status != "ok" or not samples:
        return None
    deciles = statistics.quantiles(samples, n=10, method="inclusive") if len(samples) > 1 else []
    p10, p90 = (deciles[0], deciles[8]) if deciles else (samples[0], samples[0])
    ratios: list[float] = []
    if reference is not None:
        pairs = zip(series.repeat_medians, reference.repeat_medians, strict=False)
        ratios = [mine / ref for mine, ref in pairs if mine is not None and ref]
    return Summary(
        median=statistics.median(samples),
        p10=p10,
        p90=p90,
        count=len(samples),
        repeats=sum(1 for rep in series.repeats if rep),
        ratio=statistics.median(ratios) if ratios else None,
        ratio_low=min(ratios) if ratios else None,
        ratio_high=max(ratios) if ratios else None,
    )


# --- discovery -------------------------------------------------------------------------------


def discover() -> list[Benchmark]:
    """Every benchmark of every ``benchmarks.bench_*`` module, in module then listed order."""
    found: list[Benchmark] = []
    package = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            found.extend(module.register())
    return found


def library_version(name: str) -> str:
    """The installed version of library *name*, read without importing it."""
    if name == REFERENCE:
        return f"stdlib, Python {sys.version.split()[0]}"
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def libraries(names: Iterable[str] = LIBRARIES) -> list[Implementation]:
    """The libraries to measure, each marked ``not installed`` if it cannot be found."""
    found = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            found.append(Implementation(name, name, missing="not installed"))
        else:
            found.append(Implementation(name, name, version=library_version(name)))
    return found


# --- running ---------------------------------------------------------------------------------


def run_worker(
    call: Callable[..., list[float]],
    implementation: Implementation,
    params: Mapping[str, Any],
    *,
    workdir: Path,
    timeout: float,
) -> dict[str, Any]:
    """Take one measurement in a fresh subprocess; return its result dict."""
    result_path = workdir / "result.json"
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    # Let imports write bytecode: a library under development (polyproc) has no .pyc files
    # yet, and without them every spawn child would compile its sources again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
    )
    argv = [
        sys.executable,
        "-m",
        "benchmarks._worker",
        f"{call.__module__}:{call.__qualname__}",
        implementation.module or "-",
        json.dumps(dict(params)),
        str(result_path),
    ]
    with tempfile.TemporaryFile(dir=workdir) as log:
        proc = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        finished = _wait_unreaped(proc.pid, timeout)
        code = _kill_group(proc)  # whatever it left behind must not disturb the next worker
        if not finished:
            return {"status": "error", "note": f"timed out after {timeout:g} s (killed)"}
        if result_path.exists():
            result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
            return result
        log.seek(0)
        tail = log.read().decode(errors="replace").strip().splitlines()[-1:]
        return {"status": "error", "note": f"worker exited with {code}: {' '.join(tail)}"}


def _wait_unreaped(pid: int, timeout: float) -> bool:
    """Wait up to *timeout* seconds for child *pid* to end, leaving it unreaped (a zombie).

    Returns whether it ended. While unreaped, its id cannot be reused, nor can the id of the
    process group it leads: `_kill_group` can then not hit an unrelated process.
    """
    pidfd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return bool(readable)


def _kill_group(proc: subprocess.Popen[bytes]) -> int:
    """Kill every process in the session led by the worker *proc*; reap it; return its code."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait()


def run_benchmark(
    benchmark: Benchmark,
    implementations: list[Implementation],
    *,
    repeats: int,
    quick: bool,
    timeout: float,
    progress: Callable[[str], None] = lambda _: None,
) -> Result:
    """Run *benchmark* for every implementation and its baselines, interleaved."""
    params = benchmark.quick_params if quick else benchmark.params
    entries = [*implementations]
    entries += [Implementation(label, None) for label in benchmark.baselines]
    series = [Series(impl) for impl in entries]
    for s in series:
        if s.implementation.missing:
            s.status, s.note = "skipped", s.implementation.missing
    with tempfile.TemporaryDirectory(prefix="polyproc-bench-") as tmp:
        for rep in range(repeats):
            done = []
            for s in series:
                if s.status != "ok":
                    s.repeats.append(None)
                    continue
                impl = s.implementation
                call = benchmark.baselines[impl.label] if impl.module is None else benchmark.measure
                outcome = run_worker(call, impl, params, workdir=Path(tmp), timeout=timeout)
                if outcome["status"] == "ok":
                    s.repeats.append(outcome["samples"])
                    done.append(f"{impl.label} {statistics.median(outcome['samples']):.4g}")
                else:
                    s.repeats.append(None)
                    s.status, s.note = outcome["status"], outcome.get("note", "")
                    done.append(f"{impl.label} {s.status}")
                    if "traceback" in outcome:
                        progress(f"{benchmark.name}: {impl.label} failed:\n{outcome['traceback']}")
            progress(f"{benchmark.name} repeat {rep + 1}/{repeats} ({benchmark.unit}): "
                     + ", ".join(done))
    return Result(benchmark, series)
