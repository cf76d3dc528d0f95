"""Entry point of a spawned interpreter: read the payload, prepare, run, exit.

Invoked as ``python -c "...; main()" PAYLOAD_FD REPORT_FD PARENT_FD FD,FD,... WHO`` by
:class:`~._launch.SpawnLauncher`, which writes ``PAYLOAD_LENGTH`` and the payload to
PAYLOAD_FD. Kept small: every import here is start-up time.
"""

from __future__ import annotations

import os
import sys

from ._child import run_child, write_report
from ._launch import PAYLOAD_LENGTH, decode_payload

__all__ = ["main"]


def main() -> None:
    """Run the child described by the command line, then exit with its exit code."""
    payload_fd, report_fd, parent_handle = (int(arg) for arg in sys.argv[1:4])
    fds = [int(fd) for fd in sys.argv[4].split(",") if fd]
    by_kernel = sys.argv[5] == "main-thread"
    del sys.argv[1:]
    with open(payload_fd, "rb", closefd=True) as pipe:
        data = pipe.read()
    header = PAYLOAD_LENGTH.size
    if len(data) < header or len(data) - header != PAYLOAD_LENGTH.unpack_from(data)[0]:
        # The parent died (or its start() was interrupted) before it wrote everything:
        # there is nothing to run and no one to report to. Leave without a traceback.
        os._exit(1)
    data = data[header:]
    try:
        process = decode_payload(data, fds, with_preparation=True)
    except BaseException as exc:
        write_report(report_fd, exc, "being spawned")
        raise
    finally:
        for fd in fds:  # rebuilt objects hold duplicates of their own
            os.close(fd)
    sys.exit(
        run_child(
            process, report_fd=report_fd, parent_handle=parent_handle, watch_by_kernel=by_kernel
        )
    )
