"""Queue, Lock and Value benchmarks: the shared state between processes.

Each ``measure_*`` function runs inside a fresh worker subprocess (see `benchmarks._runner`)
with the library under test passed as *mod*, and returns one sample per timed round, in the
benchmark's unit. Every child is started with the ``fork`` method, from ``mod.get_context``.
The ``baseline_*`` functions use no library under test: ``baseline_faster_fifo`` measures
``faster_fifo.Queue`` (a C++ queue on shared memory, meant to replace ``multiprocessing.Queue``)
between processes started by the standard library's ``fork`` context, and
``baseline_threading_lock`` an in-process ``threading.Lock``, for scale.

How the queue and Value timings leave process start-up out: the children are started once and
then run several *rounds*. Before each round they block reading a raw ``os.pipe`` of their own
(the *go* pipe). The parent takes ``t0 = perf_counter_ns()`` and writes one byte to each go
pipe, the consumers' first; every consumer (or Value worker) notes ``perf_counter_ns()`` when
it has all of its share of the round and writes that time, with what it received, to a raw
*report* pipe. A round lasts from ``t0`` to the latest of
those end times: ``perf_counter`` is ``CLOCK_MONOTONIC``, one clock for every process of the
machine. The first ``warmup`` rounds are discarded: they absorb the children's start-up (a
producer may not even be running yet at its first ``t0``) and first-use costs (the standard
queue's feeder thread, lazily created buffers). Start-up, the final join and the feeder
threads' flush at exit are thus never timed, and neither is the library's own synchronisation
(a Barrier or Event of one library could be slower than another's): the raw pipes cost the
same few microseconds for everyone, against rounds of tens of milliseconds. Subtracting a
start+join baseline from a whole run was the alternative; it would be far noisier (starting
four processes varies by milliseconds) and would still mix in each library's start-up costs.

Placement: each child pins itself to one CPU, round robin over the usable ones (producer *i*
on CPU *i*, consumer *i* on CPU *i + 1*, so on two CPUs a 1 -> 1 queue crosses CPUs and a
2 -> 2 queue has one producer and one consumer per CPU). Left to the scheduler, processes
migrate between runs and the result flips between same-CPU and cross-CPU behaviour (see
`benchmarks.bench_process`). The parent, idle while a round runs, is not pinned.

Every round is checked: the consumers together must receive exactly what was put (count and
sum), and the Value must end at exactly the number of increments; anything else raises, which
the report shows as an error for that implementation.

The functions run by children are at module level, and the module imports only ``os``,
``select``, ``struct`` and ``time`` at the top, like `benchmarks.bench_process`.
"""

from __future__ import annotations

import os
import select
import struct
import time

from benchmarks._api import Unavailable, get_context, require

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any

    from benchmarks._runner import Benchmark

#: Start method of every child.
START_METHOD = "fork"
#: One megabyte, as in MB/s.
MB = 1_000_000
#: What a consumer reports after a round: end time (ns), items received, their checksum.
REPORT = struct.Struct("=qqq")
#: ``timeout`` given to faster_fifo's ``put`` and ``get``, whose default (10 s) is not forever.
FASTER_FIFO_TIMEOUT = 3600.0
#: faster_fifo's buffer: room for many 1 MB messages (its default, 1 MB, holds none).
FASTER_FIFO_BYTES = 100 * MB
#: The message that ends a producer's share of a round.
END_OF_ROUND = None


# --- helpers ---------------------------------------------------------------------------------


def _pin(cpu: int) -> None:
    """Run the calling process (and the threads it starts later) on *cpu* only."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _cpus() -> list[int]:
    """The CPUs this process may use, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return [0]


def _wait_go(fd: int) -> None:
    """Block until the parent writes the go byte of the next round to *fd*."""
    if os.read(fd, 1) != b"g":
        raise RuntimeError("go pipe closed")


def _collect(fd: int, size: int, procs: list[Any]) -> bytes:
    """Read exactly *size* bytes from the report pipe *fd*, failing if a child fails first.

    The children hold copies of the pipe's write end, so one that dies leaves no end of file:
    their process sentinels (where the library has them) are watched instead. A child that
    exits with 0 has finished its last round (a producer ends before the consumers report).
    """
    sentinels = {p.sentinel: p for p in procs if hasattr(p, "sentinel")}
    data = b""
    while len(data) < size:
        readable, _, _ = select.select([fd, *sentinels], [], [])
        if fd in readable:
            data += os.read(fd, size - len(data))
            continue
        for sentinel in readable:
            proc = sentinels.pop(sentinel)
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"{proc.name} exited with {proc.exitcode} during a round")
    return data


def _join_all(procs: list[Any]) -> None:
    """Join every child; raise if one did not exit with 0."""
    for proc in procs:
        proc.join()
    failed = [f"{p.name}: {p.exitcode}" for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"children failed: {', '.join(failed)}")


# --- functions run by children -------------------------------------------------------------


def _producer(
    queue: Any, go: int, *, cpu: int, rounds: int, count: int, message_bytes: int,
    timeout: float | None,
) -> None:
    """For each of *rounds*: wait for go, put *count* messages, then `END_OF_ROUND`.

    A message is the int ``i`` (for i in range(count)) if *message_bytes* is 0, else the same
    ``bytes`` object of that size. With *timeout* (faster_fifo), it is passed to every put.
    """
    _pin(cpu)
    put = queue.put
    items: Any = range(count) if not message_bytes else [b"\xa5" * message_bytes] * count
    for _ in range(rounds):
        _wait_go(go)
        if timeout is None:
            for item in items:
                put(item)
            put(END_OF_ROUND)
        else:
            for item in items:
                put(item, True, timeout)
            put(END_OF_ROUND, True, timeout)


def _consumer(
    queue: Any, go: int, report: int, *, cpu: int, rounds: int, sized: bool,
    timeout: float | None, receive_buffer: int,
) -> None:
    """For each of *rounds*: wait for go, get messages until an `END_OF_ROUND`, then report.

    A consumer stops at the first `END_OF_ROUND` it gets, and waits for go before getting
    more: with as many consumers as producers, each then gets exactly one of the round's ends,
    and when all have theirs, every message of the round is in (the queue is FIFO, and each
    producer's end follows its messages). Without the wait, a fast consumer would take the
    rest of this round's messages into its count of the next one.

    The report is `REPORT`: the time the round's end arrived, how many messages came, and
    their sum (the ints themselves, or with *sized* the ``len`` of each ``bytes``).
    With *timeout* (faster_fifo), it is passed to every get; with *receive_buffer* (faster_fifo,
    large messages), the queue's receive buffer gets that size first (see
    `baseline_faster_fifo`).
    """
    _pin(cpu)
    if receive_buffer:
        queue.reallocate_msg_buffer(receive_buffer)
    get = queue.get
    now = time.perf_counter_ns
    for _ in range(rounds):
        _wait_go(go)
        received = total = 0
        while True:
            item = get() if timeout is None else get(True, timeout)
            if item is END_OF_ROUND:
                break
            received += 1
            total += len(item) if sized else item
        os.write(report, REPORT.pack(now(), received, total))


def _incrementer(
    value: Any, go: int, report: int, *, cpu: int, rounds: int, count: int
) -> None:
    """For each of *rounds*: wait for go, add 1 to *value* *count* times under its lock."""
    _pin(cpu)
    lock = value.get_lock()
    now = time.perf_counter_ns
    for _ in range(rounds):
        _wait_go(go)
        for _ in range(count):
            with lock:
                value.value += 1
        os.write(report, REPORT.pack(now(), count, 0))


# --- queues ----------------------------------------------------------------------------------


def _run_queue(
    ctx: Any, make_queue: Callable[[], Any], *, producers: int, consumers: int, messages: int,
    message_bytes: int, warmup: int, rounds: int, timeout: float | None = None,
    receive_buffer: int = 0,
) -> list[float]:
    """Time *rounds* rounds of *messages* messages through ``make_queue()``; see the module.

    Returns one sample per round: messages/s if *message_bytes* is 0, else MB/s.
    """
    if consumers != producers:
        raise ValueError("the end-of-round protocol needs as many consumers as producers")
    if messages % producers:
        raise ValueError(f"{messages} messages cannot be split among {producers} producers")
    share = messages // producers
    total_rounds = warmup + rounds
    queue = make_queue()
    cpus = _cpus()
    report_r, report_w = os.pipe()
    go_pipes = [os.pipe() for _ in range(consumers + producers)]
    procs = [
        ctx.Process(
            target=_consumer,
            args=(queue, go_r, report_w),
            kwargs={"cpu": cpus[(i + 1) % len(cpus)], "rounds": total_rounds,
                    "sized": bool(message_bytes), "timeout": timeout,
                    "receive_buffer": receive_buffer},
            name=f"consumer-{i}", daemon=True,
        )
        for i, (go_r, _) in enumerate(go_pipes[:consumers])
    ]
    procs += [
        ctx.Process(
            target=_producer,
            args=(queue, go_r),
            kwargs={"cpu": cpus[i % len(cpus)], "rounds": total_rounds, "count": share,
                    "message_bytes": message_bytes, "timeout": timeout},
            name=f"producer-{i}", daemon=True,
        )
        for i, (go_r, _) in enumerate(go_pipes[consumers:])
    ]
    for proc in procs:
        proc.start()
    os.close(report_w)
    for go_r, _ in go_pipes:
        os.close(go_r)
    expected = producers * (share * message_bytes if message_bytes else sum(range(share)))
    samples: list[float] = []
    try:
        for r in range(total_rounds):
            t0 = time.perf_counter_ns()
            for _, go_w in go_pipes:
                os.write(go_w, b"g")
            data = _collect(report_r, REPORT.size * consumers, procs)
            reports = [REPORT.unpack_from(data, i * REPORT.size) for i in range(consumers)]
            received = sum(rep[1] for rep in reports)
            total = sum(rep[2] for rep in reports)
            if received != messages or total != expected:
                raise RuntimeError(
                    f"round {r}: consumers got {received} messages (sum {total}), "
                    f"expected {messages} (sum {expected})"
                )
            seconds = (max(rep[0] for rep in reports) - t0) / 1e9
            if r >= warmup:
                samples.append(total / MB / seconds if message_bytes else messages / seconds)
        _join_all(procs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        os.close(report_r)
        for _, go_w in go_pipes:
            os.close(go_w)
    close = getattr(queue, "close", None)
    if close is not None:
        close()
    return samples


def measure_queue(
    mod: ModuleType, *, producers: int, consumers: int, messages: int, message_bytes: int,
    warmup: int, rounds: int,
) -> list[float]:
    """Messages/s (or MB/s for *message_bytes* > 0) through ``ctx.Queue()``; see the module."""
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Queue")
    return _run_queue(
        ctx, ctx.Queue, producers=producers, consumers=consumers, messages=messages,
        message_bytes=message_bytes, warmup=warmup, rounds=rounds,
    )


def baseline_faster_fifo(
    *, producers: int, consumers: int, messages: int, message_bytes: int, warmup: int,
    rounds: int,
) -> list[float]:
    """As `measure_queue`, through ``faster_fifo.Queue``, between stdlib ``fork`` processes.

    The queue gets a `FASTER_FIFO_BYTES` buffer, and every put and get the timeout
    `FASTER_FIFO_TIMEOUT`: faster_fifo's default of 10 s would turn a stall into a failure.

    For messages of a size, each consumer first sizes its receive buffer for one of them. The
    buffer starts tiny; a ``get`` that finds the next message too big for it grows it, then
    retries *without blocking*, and raises ``queue.Empty`` if another consumer took that
    message in between (seen with 2 consumers and 1 MB messages, faster_fifo 1.5.2). Sizing
    it ahead is what a user of large messages does anyway, and costs nothing while timed.
    """
    try:
        import faster_fifo  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise Unavailable(f"faster_fifo is not installed ({exc})") from exc
    import multiprocessing

    def make_queue() -> Any:
        return faster_fifo.Queue(max_size_bytes=FASTER_FIFO_BYTES)

    return _run_queue(
        multiprocessing.get_context(START_METHOD), make_queue, producers=producers,
        consumers=consumers, messages=messages, message_bytes=message_bytes, warmup=warmup,
        rounds=rounds, timeout=FASTER_FIFO_TIMEOUT,
        receive_buffer=2 * message_bytes + 4096 if message_bytes else 0,
    )


# --- Lock ------------------------------------------------------------------------------------


def _time_lock(lock: Any, pairs: int, warmup: int, samples: int) -> list[float]:
    """Nanoseconds per ``lock.acquire()`` + ``lock.release()``, *pairs* pairs per sample."""
    _pin(_cpus()[0])
    acquire, release = lock.acquire, lock.release
    timings: list[float] = []
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        for _ in range(pairs):
            acquire()
            release()
        t1 = time.perf_counter_ns()
        if i >= warmup:
            timings.append((t1 - t0) / pairs)
    return timings


def measure_lock(mod: ModuleType, *, pairs: int, warmup: int, samples: int) -> list[float]:
    """Nanoseconds per uncontended acquire+release of ``ctx.Lock()``, in one process.

    The bound methods are looked up once, so the Python loop and two calls are all that is
    added to the library's own cost, alike for everyone. The process is pinned to one CPU.
    """
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Lock")
    return _time_lock(ctx.Lock(), pairs, warmup, samples)


def baseline_threading_lock(*, pairs: int, warmup: int, samples: int) -> list[float]:
    """The same loop on a ``threading.Lock``, for scale (no other process can share it).

    Not a floor: its ``acquire`` parses ``blocking`` and ``timeout`` arguments, which
    ``_multiprocessing.SemLock`` (the standard library's process lock) does more cheaply.
    """
    import threading

    return _time_lock(threading.Lock(), pairs, warmup, samples)


# --- Value -----------------------------------------------------------------------------------


def measure_value(
    mod: ModuleType, *, processes: int, increments: int, warmup: int, rounds: int
) -> list[float]:
    """Increments/s of *processes* processes each doing *increments* locked ``+= 1``.

    Each child runs ``with v.get_lock(): v.value += 1`` on a shared ``ctx.Value('i', 0)``,
    pinned to its own CPU (round robin), started and synchronised as the queue children are
    (see the module). After every round the parent checks that the Value holds exactly
    ``processes * increments`` (a lost update raises), then resets it to 0.
    """
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Value")
    value = ctx.Value("i", 0)
    require(value, "get_lock", "value")
    cpus = _cpus()
    total_rounds = warmup + rounds
    report_r, report_w = os.pipe()
    go_pipes = [os.pipe() for _ in range(processes)]
    procs = [
        ctx.Process(
            target=_incrementer,
            args=(value, go_r, report_w),
            kwargs={"cpu": cpus[i % len(cpus)], "rounds": total_rounds, "count": increments},
            name=f"incrementer-{i}", daemon=True,
        )
        for i, (go_r, _) in enumerate(go_pipes)
    ]
    for proc in procs:
        proc.start()
    os.close(report_w)
    for go_r, _ in go_pipes:
        os.close(go_r)
    expected = processes * increments
    samples: list[float] = []
    try:
        for r in range(total_rounds):
            t0 = time.perf_counter_ns()
            for _, go_w in go_pipes:
                os.write(go_w, b"g")
            data = _collect(report_r, REPORT.size * processes, procs)
            ends = [REPORT.unpack_from(data, i * REPORT.size)[0] for i in range(processes)]
            with value.get_lock():
                final = value.value
                value.value = 0
            if final != expected:
                raise RuntimeError(
                    f"round {r}: Value ended at {final}, expected {expected} "
                    f"({expected - final} increments lost)"
                )
            if r >= warmup:
                samples.append(expected / ((max(ends) - t0) / 1e9))
        _join_all(procs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        os.close(report_r)
        for _, go_w in go_pipes:
            os.close(go_w)
    return samples


# --- registration ----------------------------------------------------------------------------


def _faster_fifo_version() -> str:
    """faster_fifo's installed version for the titles, read without importing it."""
    import importlib.metadata

    try:
        return importlib.metadata.version("faster_fifo")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def register() -> list[Benchmark]:
    """The benchmarks of this module, in the order they run."""
    from benchmarks._runner import Benchmark

    fifo = f"faster_fifo row: faster_fifo.Queue ({_faster_fifo_version()}) with stdlib processes"
    queues = []
    for small, (producers, consumers) in (
        (s, shape) for s in (True, False) for shape in ((1, 1), (2, 2))
    ):
        shape = f"{producers}to{consumers}"
        if small:
            name, what = f"queue-{shape}-small", "small ints"
            unit = "messages/s"
            params = {"message_bytes": 0, "messages": 40_000, "warmup": 1, "rounds": 8}
            quick = {"message_bytes": 0, "messages": 4_000, "warmup": 1, "rounds": 2}
        else:
            name, what = f"queue-{shape}-1mb", "1 MB bytes"
            unit = "MB/s (1 MB = 10**6 bytes)"
            params = {"message_bytes": MB, "messages": 100, "warmup": 1, "rounds": 8}
            quick = {"message_bytes": MB, "messages": 20, "warmup": 1, "rounds": 2}
        shape_params = {"producers": producers, "consumers": consumers}
        queues.append(
            Benchmark(
                name=name,
                title=f"Queue() of {what}, {producers} producer(s) -> {consumers} consumer(s), "
                f"fork, each pinned; timed from go to the last message received, start-up "
                f"excluded; {fifo}",
                unit=unit,
                higher_is_better=True,
                measure=measure_queue,
                params={**shape_params, **params},
                quick_params={**shape_params, **quick},
                baselines={"faster_fifo": baseline_faster_fifo},
            )
        )
    lock = Benchmark(
        name="lock-uncontended",
        title="Lock(): acquire() + release() in one process, nobody else using it; pinned",
        unit="ns per acquire+release",
        higher_is_better=False,
        measure=measure_lock,
        params={"pairs": 20_000, "warmup": 2, "samples": 30},
        quick_params={"pairs": 5_000, "warmup": 1, "samples": 5},
        baselines={"threading.Lock": baseline_threading_lock},
    )
    increments = {"processes": 2, "increments": 100_000, "warmup": 1, "rounds": 5}
    value = Benchmark(
        name="value-2proc-increments",
        title=f"Value('i', 0): {increments['processes']} processes each do "
        f"`with v.get_lock(): v.value += 1` {increments['increments']:,} times per round "
        "(fewer with --quick); fork, pinned to 2 CPUs, start-up excluded; final count "
        "checked exact every round",
        unit="increments/s",
        higher_is_better=True,
        measure=measure_value,
        params=increments,
        quick_params={**increments, "increments": 5_000, "rounds": 2},
    )
    return [*queues, lock, value]
