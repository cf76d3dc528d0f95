"""Process start-up and Pipe benchmarks.

Each ``measure_*`` function runs inside a fresh worker subprocess (see `benchmarks._runner`)
with the library under test passed as *mod*, and returns one sample per timed operation, in
the benchmark's unit. The code is written once, against the API every implementation shares:
``mod.get_context(method).Process(...)`` and ``mod.Pipe()``. The ``baseline_*`` functions use
no library at all, to show what the operating system alone costs.

The functions run by children (``_noop``, ``_echo``, ``_sink``) live at module level because
``spawn`` and ``forkserver`` children import them by name. For the same reason this module
imports only ``os``, ``pickle`` and ``time`` at the top: a child that imports more takes longer
to start, for every library alike.

The Pipe benchmarks start their child with the ``fork`` method and time only the traffic after
some warm-up messages. They pin the parent and the child to fixed CPUs (see `_place`): left to
the scheduler, a round trip on this kind of virtual machine flips between about 13 µs (both on
one CPU) and about 70 µs (a cross-CPU wake-up) from one repeat to the next, which drowns any
difference between libraries.
"""

from __future__ import annotations

import os
import pickle
import time

from benchmarks._api import Unavailable, get_context, require

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from benchmarks._runner import Benchmark

#: What the round-trip benchmarks send: small, and of three types.
SMALL_OBJECT = (1, "x", 2.0)
#: Start method of the child at the far end of the Pipe benchmarks.
PIPE_START_METHOD = "fork"
#: One megabyte, as in MB/s.
MB = 1_000_000


# --- functions run by children -------------------------------------------------------------


def _noop() -> None:
    """The trivial target of the start-up benchmarks."""


def _echo(conn: Any, cpu: int) -> None:
    """Send back every object received on *conn*, until ``None`` arrives; run on *cpu*."""
    os.sched_setaffinity(0, {cpu})
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(obj)
    conn.close()


def _sink(conn: Any, cpu: int, messages: int) -> None:
    """Receive batches of *messages* byte messages on *conn*; acknowledge each batch's bytes.

    Runs on *cpu*. An empty message instead of the first of a batch means stop.
    """
    os.sched_setaffinity(0, {cpu})
    while True:
        received = 0
        for _ in range(messages):
            data = conn.recv_bytes()
            if not data:
                conn.close()
                return
            received += len(data)
        conn.send(received)


# --- measurements ----------------------------------------------------------------------------


def measure_start(mod: ModuleType, *, method: str, warmup: int, samples: int) -> list[float]:
    """Milliseconds for ``Process(target=_noop)`` + ``start()`` + ``join()``.

    The first *warmup* starts are not kept: for ``forkserver`` the first one boots the server.
    """
    ctx = get_context(mod, method)
    timings: list[float] = []
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        proc = ctx.Process(target=_noop)
        proc.start()
        proc.join()
        t1 = time.perf_counter_ns()
        if proc.exitcode != 0:
            raise RuntimeError(f"child exited with {proc.exitcode}")
        if i >= warmup:
            timings.append((t1 - t0) / 1e6)
    return timings


def _place(placement: str) -> tuple[int, int]:
    """Pin this process for *placement*; return the CPUs of (this process, its child).

    ``one-cpu``: both on the first usable CPU, so a message costs the library's own work plus
    a same-CPU context switch. ``two-cpus``: on the first two, so each message also pays a
    cross-CPU wake-up, which on a virtual machine can dwarf everything else. Leaving placement
    to the scheduler makes the result flip between the two from one repeat to the next.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise Unavailable("pinning to CPUs is not supported on this system")
    usable = sorted(os.sched_getaffinity(0))
    if placement == "one-cpu":
        cpus = (usable[0], usable[0])
    elif placement == "two-cpus":
        if len(usable) < 2:
            raise Unavailable("needs two usable CPUs")
        cpus = (usable[0], usable[1])
    else:
        raise ValueError(f"unknown placement {placement!r}")
    os.sched_setaffinity(0, {cpus[0]})
    return cpus


def _start_pipe_child(
    mod: ModuleType, placement: str, target: Any, *args: Any
) -> tuple[Any, Any]:
    """Start *target*(conn, cpu, *args) at the other end of ``mod.Pipe()``; return our end.

    Returns (connection, process). This process and the child are pinned per *placement*.
    """
    _, child_cpu = _place(placement)
    ctx = get_context(mod, PIPE_START_METHOD)
    require(mod, "Pipe")
    conn, child_conn = mod.Pipe()
    require(conn, "send", "recv", "send_bytes", "recv_bytes")
    proc = ctx.Process(target=target, args=(child_conn, child_cpu, *args), daemon=True)
    proc.start()
    child_conn.close()
    return conn, proc


def _finish(conn: Any, proc: Any, stop: Any, *, as_bytes: bool = False) -> None:
    """Tell the child to stop, wait for it, and check that it ended well."""
    if as_bytes:
        conn.send_bytes(stop)
    else:
        conn.send(stop)
    proc.join()
    conn.close()
    if proc.exitcode != 0:
        raise RuntimeError(f"child exited with {proc.exitcode}")


def measure_roundtrip(
    mod: ModuleType, *, placement: str, warmup: int, samples: int
) -> list[float]:
    """Microseconds for ``conn.send(SMALL_OBJECT)`` + ``conn.recv()`` of the child's echo."""
    conn, proc = _start_pipe_child(mod, placement, _echo)
    timings: list[float] = []
    reply: object = None
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        conn.send(SMALL_OBJECT)
        reply = conn.recv()
        t1 = time.perf_counter_ns()
        if i >= warmup:
            timings.append((t1 - t0) / 1e3)
    _finish(conn, proc, None)
    if reply != SMALL_OBJECT:
        raise RuntimeError(f"echo returned {reply!r}")
    return timings


def measure_throughput(
    mod: ModuleType, *, placement: str, message_mb: int, messages: int, warmup: int,
    batches: int,
) -> list[float]:
    """MB/s for batches of ``send_bytes`` of *message_mb* MB each, parent to child.

    A batch ends when the child acknowledges having received all of its bytes; one sample
    per batch.
    """
    payload = b"\xa5" * (message_mb * MB)
    conn, proc = _start_pipe_child(mod, placement, _sink, messages)
    timings: list[float] = []
    for i in range(warmup + batches):
        t0 = time.perf_counter_ns()
        for _ in range(messages):
            conn.send_bytes(payload)
        received = conn.recv()
        t1 = time.perf_counter_ns()
        if received != messages * len(payload):
            raise RuntimeError(f"child received {received} bytes")
        if i >= warmup:
            timings.append(received / MB / ((t1 - t0) / 1e9))
    _finish(conn, proc, b"", as_bytes=True)
    return timings


# --- baselines without any library ----------------------------------------------------------


def _read_exact(fd: int, size: int) -> bytes:
    """Read exactly *size* bytes from *fd*; fewer only at end of file."""
    data = os.read(fd, size)
    while data and len(data) < size:
        more = os.read(fd, size - len(data))
        if not more:
            break
        data += more
    return data


def _write_all(fd: int, data: bytes) -> None:
    """Write all of *data* to *fd*."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fd_ping_pong(
    parent_fds: tuple[int, int],
    child_fds: tuple[int, int],
    *,
    placement: str,
    warmup: int,
    samples: int,
) -> list[float]:
    """Microseconds per round trip of the pickled `SMALL_OBJECT` between two raw descriptors.

    *parent_fds* and *child_fds* are (read, write) pairs; the same descriptor may appear
    twice (a socket). The child is a bare ``os.fork()`` that echoes bytes until end of file.
    """
    payload = pickle.dumps(SMALL_OBJECT, protocol=pickle.HIGHEST_PROTOCOL)
    _, child_cpu = _place(placement)
    pid = os.fork()
    if pid == 0:  # child: echo, then leave without running any of the parent's code
        code = 1
        try:
            os.sched_setaffinity(0, {child_cpu})
            for fd in set(parent_fds):
                os.close(fd)
            while data := _read_exact(child_fds[0], len(payload)):
                _write_all(child_fds[1], data)
            code = 0
        finally:
            os._exit(code)
    for fd in set(child_fds):
        os.close(fd)
    read_fd, write_fd = parent_fds
    timings: list[float] = []
    reply = b""
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        _write_all(write_fd, payload)
        reply = _read_exact(read_fd, len(payload))
        t1 = time.perf_counter_ns()
        if i >= warmup:
            timings.append((t1 - t0) / 1e3)
    for fd in set(parent_fds):
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or pickle.loads(reply) != SMALL_OBJECT:
        raise RuntimeError("raw echo child failed")
    return timings


def baseline_os_pipe(*, placement: str, warmup: int, samples: int) -> list[float]:
    """Round trips over two ``os.pipe()``: the floor under a one-way ``Pipe(duplex=False)``."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    return _fd_ping_pong(
        (up_r, down_w), (down_r, up_w), placement=placement, warmup=warmup, samples=samples
    )


def baseline_socketpair(*, placement: str, warmup: int, samples: int) -> list[float]:
    """Round trips over one ``socket.socketpair()``: the floor under a duplex ``Pipe()``."""
    import socket

    ours, theirs = (sock.detach() for sock in socket.socketpair())
    return _fd_ping_pong(
        (ours, ours), (theirs, theirs), placement=placement, warmup=warmup, samples=samples
    )


# --- registration ----------------------------------------------------------------------------


def register() -> list[Benchmark]:
    """The benchmarks of this module, in the order they run."""
    from benchmarks._runner import Benchmark

    warmup_note = {"forkserver": " (the first start, which boots the server, is warm-up)"}
    starts = [
        Benchmark(
            name=f"process-start-{method}",
            title=f"Process(target=noop).start() + join(), start method {method!r}"
            + warmup_note.get(method, ""),
            unit="ms per start+join",
            higher_is_better=False,
            measure=measure_start,
            params={"method": method, "warmup": 1, "samples": samples},
            quick_params={"method": method, "warmup": 1, "samples": quick},
        )
        for method, samples, quick in (("fork", 40, 5), ("spawn", 12, 3), ("forkserver", 30, 5))
    ]
    roundtrips = [
        Benchmark(
            name=f"pipe-roundtrip{suffix}",
            title=f"Pipe() round trip of {SMALL_OBJECT!r}: parent send + recv, child echoes; "
            + where,
            unit="µs per round trip",
            higher_is_better=False,
            measure=measure_roundtrip,
            params={"placement": placement, "warmup": 200, "samples": 3000},
            quick_params={"placement": placement, "warmup": 20, "samples": 200},
            baselines={"raw os.pipe": baseline_os_pipe, "raw socketpair": baseline_socketpair},
        )
        for suffix, placement, where in (
            ("", "one-cpu", "both pinned to one CPU (the library's own cost)"),
            ("-2cpu", "two-cpus", "pinned to two CPUs (adds cross-CPU wake-ups)"),
        )
    ]
    throughput = Benchmark(
        name="pipe-throughput-1mb",
        title="Pipe() send_bytes of 1 MB messages, parent to child (child acknowledges each "
        "batch); pinned to two CPUs",
        unit="MB/s (1 MB = 10**6 bytes)",
        higher_is_better=True,
        measure=measure_throughput,
        params={"placement": "two-cpus", "message_mb": 1, "messages": 64, "warmup": 1,
                "batches": 8},
        quick_params={"placement": "two-cpus", "message_mb": 1, "messages": 8, "warmup": 1,
                      "batches": 3},
    )
    return [*starts, *roundtrips, throughput]
