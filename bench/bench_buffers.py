"""Large data, host -> tool: shared-memory buffers against base64 in JSON, raw socket bytes, memcpy.

The host is a child process (``bench/children/buffer_server.py``) holding a
payload; this process is the tool and asks for the first N bytes of it, for N
in 64 KiB, 1 MiB, 16 MiB and 256 MiB. Columns, each the median time of one
transfer turned into GB/s (10^9 bytes per second):

* **shm**: ``Peer.request`` to a handler that returns the bytes as a buffer;
  the connection negotiated shared memory, so the buffer travels in a block
  of the host's pool and the tool copies it out while decoding (the default);
* **shm 0-copy**: the same with ``BufferSettings(zero_copy=True)`` on the
  tool's side: the clock stops when the tool holds a read-only view of the
  block, which it then gives back with ``release_buffers``;
* **base64**: the same request to a handler that returns base64 text in the
  JSON result, decoded to bytes by the tool (the way before buffers existed;
  both sides raise their frame limit so that 256 MiB fits);
* **raw socket**: a plain AF_UNIX socket, the host answering a size with that
  many bytes in one ``sendall``, the tool ``recv_into`` a buffer it owns (the
  floor of a socket: no framing, no JSON);
* **memcpy**: a copy of the same size in this process (the floor).

Before the transfers, the ~100-byte request's round trip (``Peer.request``:
p50, and the CPU time of tool and host per trip, steadier on a busy machine)
on two fresh connections, one offering shared memory and one not, in blocks
taken in turn. A message without buffers pays nothing for them by
design, so the real check is against the code before buffers existed:
``--before DIR`` measures the round trip against another source tree (e.g.
``git worktree add /tmp/before <commit>``), each tree in its own worker
process (client and host child from that tree), taken in turn. The targets
(issue 15) are printed at the end, each met or missed. Columns interleave
in blocks, so a slow spell of the machine hits every column alike.

Usage::

    python bench/bench_buffers.py                     # 64K 1M 16M 256M, Qt host
    python bench/bench_buffers.py --quick             # 64K and 1M, few rounds: does it run?
    python bench/bench_buffers.py --sizes 1M,16M --server plain
    python bench/bench_buffers.py --before /path/to/old/checkout
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(
    0,
    os.environ.get("AURORA_BENCH_TREE")
    or os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
)

from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = os.path.join(REPO, "bench", "children", "buffer_server.py")
WORKER = [sys.executable, os.path.abspath(__file__)]
KIB, MIB = 1 << 10, 1 << 20
SIZES = [64 * KIB, MIB, 16 * MIB, 256 * MIB]
QUICK_SIZES = [64 * KIB, MIB]
COLUMNS = ["shm", "shm 0-copy", "base64", "raw socket", "memcpy"]
SHM_COLUMNS = ["shm", "shm 0-copy"]
REQUEST_DATA = {"node": "pCube1", "attr": "translateX", "value": 1.5}
"""With the envelope and a fresh id, a request is ~100 bytes of JSON."""
START_TIMEOUT = 30.0
BYTES_PER_COLUMN = 512 * MIB
"""Bytes each column moves per size (bounded by MIN_ROUNDS and MAX_ROUNDS transfers)."""
MIN_ROUNDS, MAX_ROUNDS = 5, 400
BLOCKS = 5
"""Each size's transfers are made in this many blocks, taken in turn by every column."""


# -- child processes ---------------------------------------------------------------


def spawn(mode: str, address: str, max_bytes: int, tree: Optional[str] = None) -> Any:
    """Start a host child and wait for its ``listening`` line."""
    env = dict(os.environ)
    if tree:
        env["AURORA_BENCH_TREE"] = tree
    proc = subprocess.Popen(
        [sys.executable, CHILD, mode, address, str(max_bytes)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"listening":
        proc.kill()
        raise RuntimeError(f"the {mode} host did not start (exit {proc.wait()}): {line!r}")
    return proc


def finish(proc: Any, address: str) -> None:
    """Wait for a child that was asked to exit (its client hung up); kill it if it does not."""
    try:
        proc.wait(30.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        for path in (address, address + ".lock"):  # what a killed server leaves behind
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if proc.stdout is not None:
        proc.stdout.close()


def socket_path(name: str) -> str:
    path = os.path.join("/tmp", f"aurora_bench_buffers_{os.getpid()}_{name}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return path


def max_frame(max_bytes: int) -> int:
    """The frame limit the host child uses too: the base64 of ``max_bytes`` fits."""
    return max(16 * MIB, max_bytes * 4 // 3 + MIB)


# -- the tool's side of each column --------------------------------------------------


@dataclass
class HostConnection:
    """A tool connected to a host child: its ``Peer``, the channel and the child."""

    peer: Peer
    channel: LocalSocketChannel
    proc: Any
    address: str

    def close(self) -> None:
        self.peer.close()
        self.channel.close()
        finish(self.proc, self.address)


def connect_host(
    key: str, server: str, max_bytes: int, *, shared_memory: bool = True, zero_copy: bool = False
) -> HostConnection:
    """Start a host child (its socket named after ``key``) and connect a tool to it.

    ``shared_memory``: the tool offers shared memory in its ``hello`` (else the
    host sends every buffer inline); ``zero_copy``: the tool keeps views into
    the host's blocks until it releases them.
    """
    from aurora_dcc.protocol.buffers import BufferSettings, buffer_settings, configure_buffers

    name = socket_path(f"{server}_{key}")
    proc = spawn(server, name, max_bytes)
    default = buffer_settings()
    try:
        configure_buffers(shared_memory=shared_memory)  # what the hello announces
        channel = LocalSocketChannel.connect(
            name, timeout=START_TIMEOUT, max_frame=max_frame(max_bytes)
        )
        channel.set_buffer_settings(
            BufferSettings(shared_memory=shared_memory, zero_copy=zero_copy)
        )
    except Exception:
        proc.kill()
        finish(proc, name)
        raise
    finally:
        configure_buffers(shared_memory=default.shared_memory)
    return HostConnection(Peer(channel, timeout=120.0), channel, proc, name)


def shm_transfer(host: HostConnection) -> Callable[[int], None]:
    """The buffer handler's result (a numpy array or memoryview), released when lent."""
    from aurora_dcc import release_buffers

    request = host.peer.request

    def transfer(size: int) -> None:
        value = request("bench.buffer", {"size": size})
        if value.nbytes != size:
            raise RuntimeError(f"asked for {size} bytes, got {value.nbytes}")
        release_buffers(value)

    return transfer


def base64_transfer(host: HostConnection) -> Callable[[int], None]:
    request, decode = host.peer.request, base64.b64decode

    def transfer(size: int) -> None:
        data = decode(request("bench.base64", {"size": size}))
        if len(data) != size:
            raise RuntimeError(f"asked for {size} bytes, got {len(data)}")

    return transfer


@dataclass
class RawConnection:
    sock: socket.socket
    proc: Any
    address: str
    into: bytearray = field(default_factory=bytearray)

    def close(self) -> None:
        self.sock.close()
        finish(self.proc, self.address)


def connect_raw(max_bytes: int) -> RawConnection:
    path = socket_path("raw")
    proc = spawn("raw", path, max_bytes)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    into = bytearray(max_bytes)
    into[:] = bytes(max_bytes)  # touch every page now, as the other columns' warm-up does
    return RawConnection(sock, proc, path, into)


def raw_transfer(raw: RawConnection) -> Callable[[int], None]:
    view, sendall, recv_into = memoryview(raw.into), raw.sock.sendall, raw.sock.recv_into

    def transfer(size: int) -> None:
        sendall(b"%d\n" % size)
        got = 0
        while got < size:
            n = recv_into(view[got:size])
            if not n:
                raise EOFError("the raw host is gone")
            got += n

    return transfer


def memcpy_transfer(max_bytes: int) -> Callable[[int], None]:
    source = memoryview(bytearray(b"\x5a" * max_bytes))
    target = memoryview(bytearray(max_bytes))

    def transfer(size: int) -> None:
        target[:size] = source[:size]  # one memcpy (both contiguous)

    return transfer


# -- measuring ---------------------------------------------------------------------


def rounds_for(size: int, quick: bool) -> int:
    if quick:
        return 3
    return max(MIN_ROUNDS, min(MAX_ROUNDS, BYTES_PER_COLUMN // size))


def measure_sizes(
    transfers: dict[str, Callable[[int], None]], sizes: list[int], quick: bool
) -> dict[str, dict[int, float]]:
    """Median seconds per transfer, per column and size; columns interleave in blocks."""
    seconds: dict[str, dict[int, float]] = {column: {} for column in transfers}
    for size in sizes:
        rounds = rounds_for(size, quick)
        blocks = min(BLOCKS, rounds)
        samples: dict[str, list[float]] = {column: [] for column in transfers}
        for transfer in transfers.values():
            transfer(size)  # warm-up: pages mapped, pool blocks made
        for block in range(blocks):
            per_block = rounds // blocks + (1 if block < rounds % blocks else 0)
            for column, transfer in transfers.items():
                append, clock = samples[column].append, time.perf_counter
                for _ in range(per_block):
                    started = clock()
                    transfer(size)
                    append(clock() - started)
        for column, values in samples.items():
            seconds[column][size] = statistics.median(values)
    return seconds


@dataclass
class RoundTrip:
    """A ~100-byte request's round trip: p50 wall time and CPU time (tool + host) per trip."""

    p50_us: float
    cpu_us: float


def round_trips(
    hosts: dict[str, HostConnection], rounds: int, blocks: int = 10
) -> dict[str, RoundTrip]:
    """Each host's ``RoundTrip`` for ``bench.echo``, measured in blocks taken in turn.

    CPU time (this process and the host child) is steadier than wall time when
    other programs compete for the cores: what a round trip costs, not how
    long it waited for a core.
    """
    # Imported here, once aurora_dcc is loaded from the tree measured (--before's workers).
    from bench_transports import cpu_seconds

    samples: dict[str, list[int]] = {key: [] for key in hosts}
    cpu = dict.fromkeys(hosts, 0.0)
    per_block = max(1, rounds // blocks)
    clock = time.perf_counter_ns
    for host in hosts.values():
        for _ in range(max(10, rounds // 10)):  # warm-up
            host.peer.request("bench.echo", REQUEST_DATA)
    for _ in range(blocks):
        for key, host in hosts.items():
            request, append = host.peer.request, samples[key].append
            cpu_before = cpu_seconds([host.proc])
            for _ in range(per_block):
                started = clock()
                request("bench.echo", REQUEST_DATA)
                append(clock() - started)
            cpu[key] += cpu_seconds([host.proc]) - cpu_before
    return {
        key: RoundTrip(statistics.median(values) / 1000, cpu[key] / len(values) * 1e6)
        for key, values in samples.items()
    }


def round_trip_worker(server: str, rounds: int) -> None:
    """``--round-trip-worker``: this tree's ``RoundTrip`` (no buffer API used), as a JSON line."""
    name = socket_path(f"{server}_worker")
    proc = spawn(server, name, 0, os.environ.get("AURORA_BENCH_TREE"))
    channel = LocalSocketChannel.connect(name, timeout=START_TIMEOUT)
    host = HostConnection(Peer(channel, timeout=60.0), channel, proc, name)
    try:
        figures = round_trips({"tree": host}, rounds)["tree"]
    finally:
        host.close()
    print(json.dumps({"p50_us": figures.p50_us, "cpu_us": figures.cpu_us}), flush=True)


def round_trips_by_tree(server: str, rounds: int, before: str, turns: int) -> dict[str, RoundTrip]:
    """This tree's and ``before``'s ``RoundTrip``, each in worker processes taken in turn."""
    trees = {"this tree": REPO, "before": os.path.abspath(before)}
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in trees}
    for _ in range(turns):
        for key, tree in trees.items():
            out = subprocess.run(
                [*WORKER, "--server", server, "--round-trip-worker", str(rounds)],
                env={**os.environ, "AURORA_BENCH_TREE": tree},
                capture_output=True,
                text=True,
                timeout=300,
                check=True,
            ).stdout
            runs[key].append(json.loads(out.strip().splitlines()[-1]))
    return {
        key: RoundTrip(
            statistics.median(run["p50_us"] for run in values),
            statistics.median(run["cpu_us"] for run in values),
        )
        for key, values in runs.items()
    }


# -- reporting ---------------------------------------------------------------------


def label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def report_sizes(seconds: dict[str, dict[int, float]], sizes: list[int]) -> None:
    ratios = [(shm, other) for shm in SHM_COLUMNS for other in ("base64", "memcpy")]
    head = f"{'payload':>9}" + "".join(f" {column:>10}" for column in COLUMNS)
    head += "".join(f" {shm.split()[-1] + '/' + other:>13}" for shm, other in ratios)
    print("== host -> tool, one process each: GB/s (10^9 bytes/s) of the median transfer ==")
    print(head)
    print("-" * len(head))
    for size in sizes:
        rate = {column: size / seconds[column][size] / 1e9 for column in COLUMNS}
        cells = "".join(f" {rate[column]:10.3f}" for column in COLUMNS)
        cells += "".join(f" {rate[shm] / rate[other]:12.2f}x" for shm, other in ratios)
        print(f"{label(size):>9}{cells}")
    print(
        "shm: through a shared-memory block, copied out by the tool; 0-copy: the tool's read-only\n"
        "view of the block, then released; base64: JSON text decoded by the tool; raw socket:\n"
        "bytes over AF_UNIX into the tool's buffer; memcpy: one copy in this process."
    )


def report_round_trips(figures: dict[str, RoundTrip], title: str) -> None:
    print(f"== {title}: ~100-byte Peer.request round trip ==")
    base = next(iter(figures.values()))
    for key, f in figures.items():
        print(
            f"  {key:<20} p50 {f.p50_us:8.1f} us {f.p50_us / base.p50_us:6.3f}x"
            f"   cpu {f.cpu_us:7.1f} us {f.cpu_us / base.cpu_us:6.3f}x"
        )


def check_targets(
    seconds: dict[str, dict[int, float]],
    sizes: list[int],
    trips: dict[str, RoundTrip],
    by_tree: Optional[dict[str, RoundTrip]],
) -> list[str]:
    """Issue 15's targets, each printed as met or missed; returns the missed ones."""
    checks: list[tuple[str, bool]] = []

    def rate(column: str, size: int) -> float:
        return size / seconds[column][size] / 1e9

    for shm in SHM_COLUMNS:
        if MIB in sizes:
            checks.append((f"{shm} >= 3 GB/s at 1 MiB", rate(shm, MIB) >= 3.0))
            checks.append(
                (
                    f"{shm} >= 10x base64 in JSON at 1 MiB",
                    rate(shm, MIB) >= 10 * rate("base64", MIB),
                )
            )
        for size in sizes:
            if size >= 16 * MIB:
                checks.append(
                    (
                        f"{shm} >= 0.5x memcpy at {label(size)}",
                        rate(shm, size) >= 0.5 * rate("memcpy", size),
                    )
                )
    offered, not_offered = trips["shm offered"], trips["shm not offered"]
    checks.append(
        (
            "100-byte round trip p50 with shm offered within 5 % of without",
            offered.p50_us <= 1.05 * not_offered.p50_us,
        )
    )
    if by_tree is not None:
        checks.append(
            (
                "100-byte round trip p50 within 5 % of the tree before",
                by_tree["this tree"].p50_us <= 1.05 * by_tree["before"].p50_us,
            )
        )
    print("targets (issue 15):")
    for text, met in checks:
        print(f"  {'met   ' if met else 'MISSED'} {text}")
    return [text for text, met in checks if not met]


def parse_size(text: str) -> int:
    units = {"K": KIB, "M": MIB, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64K and 1M, few rounds (smoke)")
    parser.add_argument("--sizes", default="", help="comma-separated, e.g. 64K,1M,16M,256M")
    parser.add_argument("--server", choices=["qt", "plain"], default="qt", help="the host's kind")
    parser.add_argument("--rounds", type=int, default=20_000, help="100-byte round trips")
    parser.add_argument("--before", default="", help="another source tree: round trip vs it")
    parser.add_argument("--turns", type=int, default=4, help="worker runs per tree (--before)")
    parser.add_argument("--round-trip-worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.round_trip_worker:
        round_trip_worker(args.server, args.round_trip_worker)
        return 0
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.sizes:
        sizes = [parse_size(text) for text in args.sizes.split(",")]
    rounds = 200 if args.quick else args.rounds
    max_bytes = max(sizes)
    opened: list[Any] = []
    try:
        # The round trip first, on two fresh connections alike but for the shm offer.
        offered = connect_host("offered", args.server, 0)
        opened.append(offered)
        not_offered = connect_host("not_offered", args.server, 0, shared_memory=False)
        opened.append(not_offered)
        trips = round_trips({"shm offered": offered, "shm not offered": not_offered}, rounds)
        shm_host = connect_host("shm", args.server, max_bytes)
        opened.append(shm_host)
        zero_copy_host = connect_host("zero_copy", args.server, max_bytes, zero_copy=True)
        opened.append(zero_copy_host)
        raw = connect_raw(max_bytes)
        opened.append(raw)
        transfers = {
            "shm": shm_transfer(shm_host),
            "shm 0-copy": shm_transfer(zero_copy_host),
            "base64": base64_transfer(shm_host),
            "raw socket": raw_transfer(raw),
            "memcpy": memcpy_transfer(max_bytes),
        }
        seconds = measure_sizes(transfers, sizes, args.quick)
    finally:
        for connection in opened:
            connection.close()
    by_tree = None
    if args.before:
        by_tree = round_trips_by_tree(
            args.server, rounds, args.before, 1 if args.quick else args.turns
        )
    print(f"host: {args.server} server in a child process; tool: Peer over LocalSocketChannel")
    report_sizes(seconds, sizes)
    report_round_trips(trips, "shared memory offered or not (same tree)")
    if by_tree is not None:
        report_round_trips(by_tree, f"this tree vs {args.before} (worker processes)")
    check_targets(seconds, sizes, trips, by_tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
