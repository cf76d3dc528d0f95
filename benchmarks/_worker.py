"""Entry point of the fresh subprocess that takes one measurement.

Usage (by `benchmarks._runner`, not by hand)::

    python -m benchmarks._worker MODULE:FUNCTION IMPLEMENTATION PARAMS_JSON RESULT_PATH

IMPLEMENTATION is the module name of the library under test, imported here and passed to the
function as its first argument, or ``-`` for a baseline that uses no library. PARAMS_JSON holds
the function's keyword arguments. The result goes to RESULT_PATH as JSON (``status`` is
``ok``, ``skipped`` or ``error``), never to stdout, which children share.

``spawn`` children re-import this module as ``__mp_main__`` and ``forkserver`` servers
preload it, so it imports nothing at the top and does its work only under the main guard.
"""

from __future__ import annotations

import sys


def measure(call: str, implementation: str, params: dict[str, object]) -> dict[str, object]:
    """Run one measurement and describe its outcome as a JSON-ready dict."""
    import importlib
    import traceback

    from benchmarks._api import Unavailable

    module_name, _, function_name = call.partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    try:
        if implementation == "-":
            samples = function(**params)
        else:
            samples = function(importlib.import_module(implementation), **params)
    except Unavailable as exc:
        return {"status": "skipped", "note": str(exc)}
    except Exception as exc:
        return {
            "status": "error",
            "note": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    return {"status": "ok", "samples": [float(x) for x in samples]}


def main(argv: list[str]) -> int:
    """Parse the command line, measure, and write the result file."""
    import json
    import os

    call, implementation, params_json, result_path = argv
    result = measure(call, implementation, json.loads(params_json))
    temporary = result_path + ".part"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(result, out)
    os.replace(temporary, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
