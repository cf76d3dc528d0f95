"""Manager benchmarks: a ``SyncManager`` dict used from the parent, a child and four clients.

Each ``measure_*`` function runs inside a fresh worker subprocess (see `benchmarks._runner`)
with the library under test passed as *mod*, and returns samples in the benchmark's unit.
Every manager is ``mod.get_context("fork").Manager()``: a started ``SyncManager`` whose server
process is forked from the measurement process, and every child is started by the same
context's ``Process``. The code is written once, against the API all four libraries share.

The dict loop (`_set_get`): *pairs* times, ``d[key] = i`` then ``d[key]``, with ``i``
counting up and *key* cycling over a fixed set of short strings. Each of the two is one
proxy call, a round trip to the server: the rates are in *dict operations* per second, a set
and a get counting one each (a pair is two). Every value read back is summed, and the sum
must be that of the values written (a stale or lost value raises).

* ``manager-dict-parent``: the loop on ``manager.dict()`` from the process that started the
  manager, timed batch by batch: each batch of *pairs* pairs is one sample, after *warmup*
  batches that are not kept (the first call opens the connection). Its ``bare dict server``
  row (`baseline_bare_dict_server`, no library) runs the same loop against a process forked
  by hand that owns a plain dict and answers requests pickled over a ``socket.socketpair()``
  (a length, then the pickle; a few lines of Python on each side, no authentication, no
  threads): about the floor of a design that makes one Python round trip per operation, which
  tells how far a manager could still go without changing that design.
* ``manager-dict-child``: the same batches, inside one child ``Process`` that receives the
  proxy as an argument (under ``fork`` it inherits it; its first call, in the warm-up, opens
  the child's own connection). The child times itself and writes the batch durations to a
  raw ``os.pipe``, which the parent reads to its end; the parent then checks the child's exit
  code.
* ``manager-dict-4-clients`` and ``manager-dict-4-clients-2cpu`` (they differ only in
  placement, below): four child processes, each running the loop on 100 keys of its own in
  the same managed dict, so that the server serves four connections at once. They are
  released together, round after round, as in `benchmarks.bench_shared`: each blocks reading
  a raw ``os.pipe`` of its own (its *go* pipe); the parent takes ``t0`` and writes one byte
  to every go pipe, and each client, its round done, writes a `benchmarks.bench_shared.REPORT`
  (end time, its index, the round) to a shared raw *report* pipe. A client whose values do
  not check raises, and the parent sees it exit. A round lasts from ``t0`` until the parent
  has all four reports, by its own clock (so the last report's wake-up is included:
  microseconds against rounds of a tenth of a second or more). The sample is the aggregate
  rate, 4 x 2 x *pairs* operations over that time. The first round is warm-up: it absorbs the
  clients' start-up and first connection. After the last round, the parent checks the dict's
  whole content (``d.copy()``) against the last value each client wrote to each key.
* ``manager-startup``: milliseconds from calling ``ctx.Manager()`` until the first dict
  operation returns: the server process started, a ``manager.dict()`` created and one
  ``d["key"] = 1`` done. One manager after the other in one process, each shut down before
  the next starts; the first one, which also pays for importing the managers module, is
  warm-up.
* ``manager-shutdown``: milliseconds for ``manager.shutdown()`` of those same managers, until
  it returns. The server must be gone by then: the parent checks that its process (found as
  ``manager._process``, which all four libraries keep) has exited, zombie or reaped; a
  library whose ``shutdown()`` returned with the server still running fails the benchmark
  rather than look faster than it is.

Placement. A proxy round trip is a message to the server and a reply: two wake-ups of a
blocked process. On a virtual machine a wake-up across CPUs costs tens of microseconds (see
`benchmarks.bench_process`): on the 2-core machine of BENCHMARKS.md, client and server pinned
to two different CPUs did about 6,000 operations/s (the standard library and polyproc alike),
against 50,000 to 80,000 on one CPU, and left to the scheduler a run flips between the two
regimes from one repeat to the next (four unpinned clients gave 27,000 or 61,000
operations/s for the same library).
So every process is pinned. The measurement process pins itself to the server's CPU before
starting the manager (the forked server inherits that), then pins every thread the server
already has (the threads it starts later inherit from them); each client pins itself.

* ``one-cpu`` (``manager-dict-parent``, ``manager-dict-child``, ``manager-dict-4-clients``):
  server and clients all on the first usable CPU. A round trip then costs the library's own
  work on both sides plus same-CPU switches: what a library can change.
* ``two-cpus`` (``manager-dict-4-clients-2cpu``): the server on the first CPU, the clients on
  the first two in turn (clients 0 and 2 with the server, 1 and 3 on the other CPU), so that
  clients run while the server works, at the price of cross-CPU wake-ups.

The start-up and shutdown benchmarks pin nothing.

The functions run by children are at module level; this module imports only ``os``,
``struct`` and ``time`` at the top (``pickle`` and ``socket`` only for the bare server), like
the other topic modules.
"""

from __future__ import annotations

import os
import struct
import time

from benchmarks._api import Unavailable, get_context, require
from benchmarks.bench_shared import REPORT, _collect, _cpus, _join_all, _pin, _wait_go

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from benchmarks._runner import Benchmark

#: Start method of the manager's server and of every child.
START_METHOD = "fork"
#: A batch duration sent back by the child of ``manager-dict-child``, in nanoseconds.
DURATION = struct.Struct("=q")


# --- helpers ---------------------------------------------------------------------------------


def _manager(mod: ModuleType) -> Any:
    """A started ``SyncManager`` of *mod*, its server forked from this process."""
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Manager")
    return ctx.Manager()


def _keys(prefix: str, count: int) -> list[str]:
    """The *count* keys a loop cycles over: short strings."""
    return [f"{prefix}{j}" for j in range(count)]


def _set_get(d: Any, keys: list[str], start: int, pairs: int) -> None:
    """*pairs* times ``d[key] = i`` then ``d[key]``, for i from *start*; checks every value.

    The values read are summed and compared once at the end, so that the loop holds no more
    than the two proxy calls and some arithmetic.
    """
    count = len(keys)
    total = 0
    for i in range(start, start + pairs):
        key = keys[i % count]
        d[key] = i
        total += d[key]
    expected = (2 * start + pairs - 1) * pairs // 2
    if total != expected:
        raise RuntimeError(f"the values read back sum to {total}, not {expected}")


def _timed_batches(d: Any, keys: list[str], *, pairs: int, warmup: int,
                   batches: int) -> list[int]:
    """Nanoseconds of each of *warmup* + *batches* batches of `_set_get`, warm-up included."""
    durations = []
    for b in range(warmup + batches):
        t0 = time.perf_counter_ns()
        _set_get(d, keys, b * pairs, pairs)
        durations.append(time.perf_counter_ns() - t0)
    return durations


def _rates(durations: list[int], *, pairs: int, warmup: int) -> list[float]:
    """Dict operations/s of each batch after the first *warmup* ones (a pair is two)."""
    return [2 * pairs / (ns / 1e9) for ns in durations[warmup:]]


def _place(placement: str, clients: int) -> tuple[int, list[int]]:
    """Pin this process to the server's CPU for *placement*; return it and each client's.

    Done before the manager starts: its forked server inherits the CPU (`_pin_server` makes
    sure). See the module for the placements.
    """
    cpus = _cpus()
    if not hasattr(os, "sched_setaffinity"):
        raise Unavailable("pinning to CPUs is not supported on this system")
    if placement == "one-cpu":
        _pin(cpus[0])
        return cpus[0], [cpus[0]] * clients
    if placement == "two-cpus":
        if len(cpus) < 2:
            raise Unavailable("needs two usable CPUs")
        _pin(cpus[0])
        return cpus[0], [cpus[i % 2] for i in range(clients)]
    raise ValueError(f"unknown placement {placement!r}")


def _pin_server(manager: Any, cpu: int) -> None:
    """Pin every thread the manager's server process has now to *cpu*.

    Threads it starts later inherit the CPU of the thread that starts them. Its process is
    ``manager._process``, which all four libraries keep.
    """
    pid = getattr(getattr(manager, "_process", None), "pid", None)
    if pid is None:
        raise Unavailable("the manager's server process cannot be found to pin it")
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def _placed_manager(mod: ModuleType, placement: str, clients: int) -> tuple[Any, list[int]]:
    """A started manager of *mod*, its server placed; and the CPU of each client."""
    server_cpu, client_cpus = _place(placement, clients)
    manager = _manager(mod)
    try:
        _pin_server(manager, server_cpu)
    except BaseException:
        manager.shutdown()
        raise
    return manager, client_cpus


def _server_running(manager: Any) -> bool:
    """Whether the manager's server process still runs (a zombie has ended)."""
    process = getattr(manager, "_process", None)
    pid = getattr(process, "pid", None)
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False  # reaped
    return state not in ("Z", "X")


# --- functions run by children -------------------------------------------------------------


def _dict_child(d: Any, report: int, *, cpu: int, keys: int, pairs: int, warmup: int,
                batches: int) -> None:
    """Run the timed batches on *d*; write each batch's `DURATION` to *report*."""
    _pin(cpu)
    durations = _timed_batches(d, _keys("k", keys), pairs=pairs, warmup=warmup,
                               batches=batches)
    data = b"".join(DURATION.pack(ns) for ns in durations)
    view = memoryview(data)
    while view:
        view = view[os.write(report, view):]
    os.close(report)


def _dict_client(d: Any, go: int, report: int, *, index: int, cpu: int, keys: int,
                 pairs: int, rounds: int) -> None:
    """For each of *rounds*: wait for go, run `_set_get` on keys of its own, then report."""
    _pin(cpu)
    own = _keys(f"c{index}-", keys)
    for r in range(rounds):
        _wait_go(go)
        _set_get(d, own, r * pairs, pairs)  # raises on a wrong value: the child then fails
        os.write(report, REPORT.pack(time.perf_counter_ns(), index, r))


# --- measurements ----------------------------------------------------------------------------


def measure_dict_parent(mod: ModuleType, *, placement: str, keys: int, pairs: int,
                        warmup: int, batches: int) -> list[float]:
    """Dict operations/s of `_set_get` batches on ``manager.dict()``, from the parent."""
    manager, (client_cpu,) = _placed_manager(mod, placement, 1)
    try:
        _pin(client_cpu)
        d = manager.dict()
        durations = _timed_batches(d, _keys("k", keys), pairs=pairs, warmup=warmup,
                                   batches=batches)
    finally:
        manager.shutdown()
    return _rates(durations, pairs=pairs, warmup=warmup)


def measure_dict_child(mod: ModuleType, *, placement: str, keys: int, pairs: int,
                       warmup: int, batches: int) -> list[float]:
    """Dict operations/s of `_set_get` batches on ``manager.dict()``, timed in a child."""
    manager, (client_cpu,) = _placed_manager(mod, placement, 1)
    try:
        d = manager.dict()
        ctx = get_context(mod, START_METHOD)
        report_r, report_w = os.pipe()
        with os.fdopen(report_r, "rb") as reader:
            proc = ctx.Process(
                target=_dict_child, args=(d, report_w),
                kwargs={"cpu": client_cpu, "keys": keys, "pairs": pairs, "warmup": warmup,
                        "batches": batches},
                name="dict-child", daemon=True,
            )
            try:
                proc.start()
            finally:
                os.close(report_w)
            data = reader.read()  # to the end: the child's exit closes its copy
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"the child exited with {proc.exitcode}")
    finally:
        manager.shutdown()
    if len(data) != DURATION.size * (warmup + batches):
        raise RuntimeError(f"the child sent {len(data)} bytes of timings")
    durations = [DURATION.unpack_from(data, i * DURATION.size)[0]
                 for i in range(warmup + batches)]
    return _rates(durations, pairs=pairs, warmup=warmup)


def measure_dict_clients(mod: ModuleType, *, placement: str, clients: int, keys: int,
                         pairs: int, warmup: int, rounds: int) -> list[float]:
    """Aggregate dict operations/s of *clients* children on one ``manager.dict()``."""
    manager, client_cpus = _placed_manager(mod, placement, clients)
    try:
        d = manager.dict()
        return _run_clients(mod, d, client_cpus, keys=keys, pairs=pairs, warmup=warmup,
                            rounds=rounds)
    finally:
        manager.shutdown()


def _run_clients(mod: ModuleType, d: Any, client_cpus: list[int], *, keys: int, pairs: int,
                 warmup: int, rounds: int) -> list[float]:
    """The rounds of `measure_dict_clients`, a client on each of *client_cpus*."""
    ctx = get_context(mod, START_METHOD)
    clients = len(client_cpus)
    total_rounds = warmup + rounds
    if total_rounds * pairs < keys:
        raise ValueError("too few pairs to write every key")
    report_r, report_w = os.pipe()
    go_pipes = [os.pipe() for _ in range(clients)]
    procs = [
        ctx.Process(
            target=_dict_client, args=(d, go_r, report_w),
            kwargs={"index": i, "cpu": client_cpus[i], "keys": keys, "pairs": pairs,
                    "rounds": total_rounds},
            name=f"dict-client-{i}", daemon=True,
        )
        for i, (go_r, _) in enumerate(go_pipes)
    ]
    samples: list[float] = []
    try:
        for proc in procs:
            proc.start()
        os.close(report_w)
        for go_r, _ in go_pipes:
            os.close(go_r)
        for r in range(total_rounds):
            t0 = time.perf_counter_ns()
            for _, go_w in go_pipes:
                os.write(go_w, b"g")
            data = _collect(report_r, REPORT.size * clients, procs)
            t1 = time.perf_counter_ns()
            reports = sorted(REPORT.unpack_from(data, i * REPORT.size)[1:]
                             for i in range(clients))
            if reports != [(i, r) for i in range(clients)]:
                raise RuntimeError(f"round {r}: unexpected reports {reports}")
            if r >= warmup:
                samples.append(clients * 2 * pairs / ((t1 - t0) / 1e9))
        _join_all(procs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        os.close(report_r)
        for _, go_w in go_pipes:
            os.close(go_w)
    last = total_rounds * pairs
    expected = {f"c{c}-{i % keys}": i for c in range(clients) for i in range(last - keys, last)}
    final = d.copy()
    if final != expected:
        raise RuntimeError(f"the dict ends with {len(final)} items, not the {len(expected)} "
                           "expected, or with wrong values")
    return samples


def measure_lifecycle(mod: ModuleType, *, part: str, warmup: int, samples: int) -> list[float]:
    """Milliseconds of start-up to the first dict operation (*part* ``startup``) or of
    ``shutdown()`` (*part* ``shutdown``), for *warmup* + *samples* managers in turn."""
    if part not in ("startup", "shutdown"):
        raise ValueError(f"unknown part {part!r}")
    ctx = get_context(mod, START_METHOD)
    require(ctx, "Manager")
    timings: list[float] = []
    for i in range(warmup + samples):
        t0 = time.perf_counter_ns()
        manager = ctx.Manager()
        try:
            d = manager.dict()
            d["key"] = 1
            t1 = time.perf_counter_ns()
            del d
        finally:
            t2 = time.perf_counter_ns()
            manager.shutdown()
            t3 = time.perf_counter_ns()
        if _server_running(manager):
            raise RuntimeError("the server still runs after shutdown() returned")
        if i >= warmup:
            timings.append(((t1 - t0) if part == "startup" else (t3 - t2)) / 1e6)
    return timings


# --- a baseline without any library ---------------------------------------------------------


class _BareDict:
    """The client side of `baseline_bare_dict_server`: ``d[k] = v`` and ``d[k]`` as round trips.

    A request is ``(method name, args)`` and a reply ``(ok, value)``, each pickled and sent
    with a 4-byte length first.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def _call(self, name: str, *args: Any) -> Any:
        _send_frame(self._sock, (name, args))
        ok, value = _recv_frame(self._sock)
        if not ok:
            raise RuntimeError(f"the bare server failed: {value}")
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._call("__setitem__", key, value)

    def __getitem__(self, key: str) -> Any:
        return self._call("__getitem__", key)


#: The length before every frame of `_BareDict`.
FRAME = struct.Struct("!I")


def _send_frame(sock: Any, obj: Any) -> None:
    """Send pickled *obj*, its length first, in one ``sendall``."""
    import pickle

    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(FRAME.pack(len(data)) + data)


def _recv_exactly(sock: Any, size: int) -> bytes:
    """*size* bytes from *sock*; fewer only at the end of the stream."""
    data = sock.recv(size)
    while data and len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            break
        data += more
    return bytes(data)


def _recv_frame(sock: Any) -> Any:
    """The next object sent by `_send_frame`, or None at the end of the stream."""
    import pickle

    head = _recv_exactly(sock, FRAME.size)
    if len(head) < FRAME.size:
        return None
    return pickle.loads(_recv_exactly(sock, FRAME.unpack(head)[0]))


def _serve_bare_dict(sock: Any) -> None:
    """Own a dict and run the requests of `_BareDict` on it until the stream ends."""
    owned: dict[str, Any] = {}
    while (request := _recv_frame(sock)) is not None:
        name, args = request
        try:
            reply = (True, getattr(owned, name)(*args))
        except Exception as exc:
            reply = (False, repr(exc))
        _send_frame(sock, reply)


def baseline_bare_dict_server(*, placement: str, keys: int, pairs: int, warmup: int,
                              batches: int) -> list[float]:
    """`measure_dict_parent`'s loop against a bare forked process that owns a plain dict.

    No library: one ``socket.socketpair()``, requests and replies pickled with a length
    before them, a loop of a few lines on each side, no authentication, no threads. It is the
    floor of any design that makes one Python round trip per operation on this machine, for
    the same *placement*.
    """
    import socket

    server_cpu, (client_cpu,) = _place(placement, 1)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the server: serve, then leave without running any of the parent's code
        code = 1
        try:
            _pin(server_cpu)
            ours.close()
            _serve_bare_dict(theirs)
            code = 0
        finally:
            os._exit(code)
    theirs.close()
    try:
        _pin(client_cpu)
        durations = _timed_batches(_BareDict(ours), _keys("k", keys), pairs=pairs,
                                   warmup=warmup, batches=batches)
    finally:
        ours.close()
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the bare server exited with {os.waitstatus_to_exitcode(status)}")
    return _rates(durations, pairs=pairs, warmup=warmup)


# --- registration ----------------------------------------------------------------------------


def register() -> list[Benchmark]:
    """The benchmarks of this module, in the order they run."""
    from benchmarks._runner import Benchmark

    ops = "dict operations/s (d[k] = v and d[k] count one each)"

    def loop(params: dict[str, Any], per: str) -> str:
        return (f"d[k] = i then d[k], k cycling over {params['keys']} str keys, "
                f"{params['pairs']:,} pairs {per} (fewer with --quick)")

    one_cpu = "server and client(s) pinned to one CPU"
    single = {"placement": "one-cpu", "keys": 100, "pairs": 2_000, "warmup": 1, "batches": 10}
    single_quick = {**single, "pairs": 200, "batches": 3}
    per_sample = loop(single, "per sample")
    clients = {"placement": "one-cpu", "clients": 4, "keys": 100, "pairs": 1_000, "warmup": 1,
               "rounds": 4}
    clients_quick = {**clients, "pairs": 200, "rounds": 2}
    per_client = loop(clients, "per client per round")
    together = (f"{clients['clients']} child Processes at once on one Manager().dict(), each "
                f"on keys of its own: {per_client}; clients released together through pipes "
                f"and timed by the parent from release to the last report; first round warm-up")
    lifecycle = {"warmup": 1, "samples": 40}
    lifecycle_quick = {"warmup": 1, "samples": 3}
    return [
        Benchmark(
            name="manager-dict-parent",
            title=f"Manager().dict() from the process that started the manager: "
            f"{per_sample}, after a warm-up batch; {one_cpu}; fork; target >= 2x stdlib; "
            f"bare dict server row: the same loop against a forked process owning a plain "
            f"dict, pickles over a socketpair, no library (about the floor of one round trip "
            f"per operation)",
            unit=ops,
            higher_is_better=True,
            measure=measure_dict_parent,
            params=single,
            quick_params=single_quick,
            baselines={"bare dict server": baseline_bare_dict_server},
        ),
        Benchmark(
            name="manager-dict-child",
            title=f"Manager().dict() used inside one child Process (proxy passed as an "
            f"argument, timed in the child): {per_sample}, after a warm-up batch; "
            f"{one_cpu}; fork",
            unit=ops,
            higher_is_better=True,
            measure=measure_dict_child,
            params=single,
            quick_params=single_quick,
        ),
        Benchmark(
            name="manager-dict-4-clients",
            title=f"{together}; {one_cpu}; fork; target >= 2x stdlib",
            unit=f"aggregate {ops}",
            higher_is_better=True,
            measure=measure_dict_clients,
            params=clients,
            quick_params=clients_quick,
        ),
        Benchmark(
            name="manager-dict-4-clients-2cpu",
            title=f"{together}; server on the first CPU, clients on the first two in turn (adds "
            f"cross-CPU wake-ups); fork",
            unit=f"aggregate {ops}",
            higher_is_better=True,
            measure=measure_dict_clients,
            params={**clients, "placement": "two-cpus"},
            quick_params={**clients_quick, "placement": "two-cpus"},
        ),
        Benchmark(
            name="manager-startup",
            title="ctx.Manager() until the first dict operation returns (server started, "
            "manager.dict() created, one d['key'] = 1 done); the first manager of the process "
            "is warm-up; not pinned; fork; target: no slower than stdlib",
            unit="ms from Manager() to the first dict operation done",
            higher_is_better=False,
            measure=measure_lifecycle,
            params={"part": "startup", **lifecycle},
            quick_params={"part": "startup", **lifecycle_quick},
        ),
        Benchmark(
            name="manager-shutdown",
            title="manager.shutdown() of the managers of manager-startup, until it returns "
            "(the server process must have exited by then: checked); not pinned; fork",
            unit="ms per shutdown()",
            higher_is_better=False,
            measure=measure_lifecycle,
            params={"part": "shutdown", **lifecycle},
            quick_params={"part": "shutdown", **lifecycle_quick},
        ),
    ]
