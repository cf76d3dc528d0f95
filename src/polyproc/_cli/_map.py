"""``polyproc map MODULE:FUNCTION [INPUT]``: a function over every line, in parallel.

Each line of INPUT (a file, or standard input) is passed to FUNCTION (as a string, or
decoded from JSON with ``--json``); each result is written as one JSON line,
``{"index": i, "result": ...}``, in input order (``--unordered``: as they finish). A
failure is written as ``{"index": i, "error": "Type: message", "traceback": "..."}``: a
function that raised, a result JSON cannot encode, a worker that died (the pool replaces
it and goes on) or a task past ``--timeout``. The exit status is 0 when every item
succeeded, 1 when any failed, 2 for a usage error.

The records are encoded in the workers, so the parent only moves lines: the job runs at
the speed of the pool itself.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, TextIO

__all__ = ["add_map_command"]


def add_map_command(sub: Any) -> None:
    """Add the ``map`` subcommand to the ``polyproc`` parser."""
    parser = sub.add_parser(
        "map",
        help="apply MODULE:FUNCTION to every line of a file or stdin, in parallel",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("target", metavar="MODULE:FUNCTION",
                        help="the function to apply, e.g. mypackage.jobs:parse")
    parser.add_argument("input", nargs="?", metavar="INPUT",
                        help="a file of lines (default: standard input)")
    parser.add_argument("-o", "--output", help="write the JSON lines here (default: stdout)")
    parser.add_argument("-j", "--processes", type=int, default=None,
                        help="worker processes (default: the CPU count)")
    parser.add_argument("--chunksize", type=int, default=1,
                        help="items per task (default 1; tiny tasks are batched anyway)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one item may take; a stuck worker is killed")
    parser.add_argument("--retries", type=int, default=0,
                        help="run an item again this many times if its worker died or it "
                             "timed out")
    parser.add_argument("--json", action="store_true",
                        help="decode each input line as JSON before the call")
    parser.add_argument("--unordered", action="store_true",
                        help="write results as they finish, not in input order")
    parser.add_argument("--start-method", choices=["fork", "spawn", "forkserver"],
                        help="how workers start (default: Python's default)")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="run on the Dask cluster whose scheduler is at ADDRESS")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="draw a progress bar on stderr (default: when it is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run_map)


class LineCall:
    """The task of one item: call the function, and encode the record as a JSON line.

    Pickles as the function's name, so the workers import it themselves.
    """

    def __init__(self, target: str, json_input: bool) -> None:
        self.target = target
        self.json_input = json_input
        self._function: Callable[[Any], Any] | None = None

    def __repr__(self) -> str:
        return self.target  # error messages name the user's function, not this wrapper

    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.json_input)

    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target, self.json_input = state
        self._function = None

    def function(self) -> Callable[[Any], Any]:
        """The function named by the target (imported once per process)."""
        if self._function is None:
            self._function = resolve(self.target)
        return self._function

    def __call__(self, item: tuple[int, str]) -> tuple[bool, str]:
        index, line = item
        try:
            value = json.loads(line) if self.json_input else line
            result = self.function()(value)
            return True, json.dumps({"index": index, "result": result})
        except Exception as exc:
            return False, error_record(index, exc)


def error_record(index: int | None, exc: BaseException) -> str:
    """The JSON line reporting *exc* for item *index*."""
    import traceback

    return json.dumps({
        "index": index,
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    })


def resolve(target: str) -> Callable[[Any], Any]:
    """The function *target* (``module:function``, the function may be dotted) names.

    Raises:
        ValueError: *target* is not of the form MODULE:FUNCTION.
        ImportError, AttributeError: nothing of that name.
    """
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"expected MODULE:FUNCTION, got {target!r}")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"{target} is not callable")
    return found  # type: ignore[no-any-return]


def _lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    for index, line in enumerate(stream):
        yield index, line.rstrip("\r\n")


def run_map(args: argparse.Namespace) -> int:
    """Run the map job the arguments describe; returns the exit status."""
    import polyproc

    # As `python -m`: modules of the current directory are importable, in the workers too
    # (spawned ones receive this sys.path).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        resolve(args.target)  # a typo fails here, once, not in every worker
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"polyproc map: {exc}", file=sys.stderr)
        return 2
    total = None
    if args.input is not None:
        try:
            with open(args.input, "rb") as counting:
                total = sum(1 for _ in counting)
        except OSError as exc:
            print(f"polyproc map: cannot read {args.input}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
    source = sys.stdin if args.input is None else open(args.input, encoding="utf-8")  # noqa: SIM115
    out = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    pool_options: dict[str, Any] = {"task_timeout": args.timeout, "retries": args.retries}
    if args.cluster:
        pool_options["cluster"] = args.cluster
    ctx = polyproc.get_context(args.start_method)
    started = time.monotonic()
    done = failed = 0
    try:
        with ctx.Pool(args.processes, **pool_options) as pool:
            call = LineCall(args.target, args.json)
            progress: Any = False
            if show_progress:
                from .._pool._progress import TextBar

                progress = TextBar(total, sys.stderr, "polyproc map")
            imap = pool.imap_unordered if args.unordered else pool.imap
            results = imap(call, _lines(source), args.chunksize, progress=progress)
            while True:
                try:
                    ok, line = next(results)
                except StopIteration:
                    break
                except Exception as exc:  # the pool's own: a lost worker, a timeout
                    index = done if not args.unordered else getattr(exc, "task_item", None)
                    ok, line = False, error_record(index, exc)
                done += 1
                failed += not ok
                out.write(line)
                out.write("\n")
    finally:
        if source is not sys.stdin:
            source.close()
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    print(f"polyproc map: {done} items, {failed} failed, in {elapsed:.2f} s "
          f"({rate:,.0f} items/s)", file=sys.stderr)
    return 1 if failed else 0
