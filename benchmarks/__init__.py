"""Benchmarks: polyproc against the standard library and its peers, in one interleaved run.

Run ``python -m benchmarks --help``. Layout:

- ``_runner``: the generic machinery (benchmark specs, discovery, interleaved repeats, one
  fresh subprocess per measurement, statistics and ratios);
- ``_worker``: the entry point of that subprocess;
- ``_api``: the few helpers the topic modules share with the worker;
- ``_report``: machine header, plain text table, markdown section;
- ``bench_*``: one module per topic, each exposing ``register() -> list[Benchmark]``;
- ``plot``: a PNG of the Pool results saved by ``--json`` (``python -m benchmarks.plot``).

To add a topic, write ``bench_<topic>.py`` with module-level ``measure_*`` functions that take
the library module first (and return samples in the unit), and a ``register()`` that lists
their `_runner.Benchmark` specs; the runner discovers it by its name.

This package stays free of imports: spawned and forkserver children import it (to reach the
functions they run), and every module they load adds to the start-up time being measured.
"""
