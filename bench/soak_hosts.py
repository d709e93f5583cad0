"""Soak: a Qt host serving clients that connect, flood, stall and die, for N minutes.

This process is the host: a ``QtLocalSocketServer`` on a Qt loop that answers
every request with its data and broadcasts numbered ``tick`` events. A child
process (this script with ``--role clients``) runs a changing mix of clients
against it until the time is up:

* readers: take every tick (a gap is a lost message) and make requests now and
  then (a request without its response is a lost message);
* flooders: send bursts of requests and wait for every response;
* stallers: open a session, then never read: the host must drop them (its
  output bound) without stalling the others;
* diers: open a session, send half a frame, and reset the connection.

The host samples its memory (RSS), threads and descriptors; at the end it prints
them at the start, the largest, and after the clients left, with the clients'
counts (lost messages, stallers dropped). Not part of ``make test`` nor of
``bench/run.py``.

``--tracemalloc`` also traces the host's Python allocations (snapshots at the
start, the middle and the end) and prints what grew most, by traceback: RSS
that grows while the traced total stays flat is the C allocator's, not a leak
of objects. Tracing slows every allocation, so the message rates are lower.

Usage::

    python bench/soak_hosts.py                  # 30 minutes
    python bench/soak_hosts.py --minutes 2
    python bench/soak_hosts.py --minutes 8 --tracemalloc
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Any, Optional

_TICKS_PER_TURN = 50
_TURN_MS = 10
_PAD = "x" * 200  # a tick of ~260 bytes: a staller falls behind the output bound in seconds
_HELLO = b'{"type":"hello","data":{"protocol":1,"peer":"soak","pid":0}}\n'


# -- the host --------------------------------------------------------------------


def _sample() -> dict[str, int]:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir("/proc/self/fd")),
    }


def _trimmed_rss_kib() -> Optional[int]:
    """RSS after glibc's ``malloc_trim`` returned freed heap to the OS (None elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return _sample()["rss_kib"]


class AllocationTrace:
    """``--tracemalloc``: snapshots of the host's Python allocations, and what grew.

    Usage::

        trace = AllocationTrace(frames=8)
        trace.snapshot("start")
        ...
        trace.snapshot("end")
        trace.report()
    """

    def __init__(self, frames: int) -> None:
        tracemalloc.start(frames)
        self.snapshots: list[tuple[str, tracemalloc.Snapshot, int]] = []

    def snapshot(self, label: str) -> None:
        snap = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        self.snapshots.append((label, snap, _sample()["rss_kib"]))

    def report(self, top: int = 12) -> None:
        print("  tracemalloc (Python objects still allocated) vs RSS:")
        for label, snap, rss in self.snapshots:
            traced = sum(stat.size for stat in snap.statistics("filename"))
            print(f"    {label:7} traced {traced / 2**20:7.2f} MiB   rss {rss / 1024:7.1f} MiB")
        first, last = self.snapshots[0][1], self.snapshots[-1][1]
        pairs = [("start -> end", first, last)]
        if len(self.snapshots) > 2:
            pairs.append(("middle -> end", self.snapshots[1][1], last))
        for title, before, after in pairs:
            print(f"  largest growth {title}, by traceback:")
            for stat in after.compare_to(before, "traceback")[:top]:
                if stat.size_diff <= 0:
                    break
                print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
                for line in stat.traceback.format(limit=4, most_recent_first=True):
                    print(f"      {line}")


def run_host(minutes: float, seed: int, trace_frames: int = 0) -> int:
    from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
    from aurora_dcc.qt.compat import QtCore
    from aurora_dcc.qt.local_socket import QtLocalSocketServer

    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    name = f"soak_{os.getpid()}"
    server = QtLocalSocketServer(name)

    def serve(conn: Any) -> None:
        def on_message(msg: IpcMessage) -> None:
            if msg.type is IpcMessageType.REQUEST:
                with contextlib.suppress(Exception):  # gone: counted on the client's side
                    conn.send(IpcMessage.response(msg.id, msg.data))

        conn.on_message(on_message)

    server.on_connection(serve)
    seq = [0]

    def tick() -> None:
        with server.batch():
            for _ in range(_TICKS_PER_TURN):
                server.emit("tick", {"seq": seq[0], "pad": _PAD})
                seq[0] += 1

    ticker = QtCore.QTimer()
    ticker.timeout.connect(tick)
    ticker.start(_TURN_MS)
    samples: list[dict[str, int]] = []

    def sample() -> None:
        samples.append(_sample())

    sampler = QtCore.QTimer()
    sampler.timeout.connect(sample)
    sampler.start(5000)
    trace = AllocationTrace(trace_frames) if trace_frames else None
    if trace is not None:
        trace.snapshot("start")
        QtCore.QTimer.singleShot(int(minutes * 30_000), lambda: trace.snapshot("middle"))
    start = _sample()
    seconds = minutes * 60
    command = [sys.executable, __file__, "--role", "clients", "--name", name]
    clients = subprocess.Popen(
        [*command, "--seconds", str(seconds), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    give_up = time.monotonic() + seconds + 120.0  # a client stuck for good is a finding too
    while clients.poll() is None and time.monotonic() < give_up:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
    if clients.poll() is None:
        clients.kill()
        print("soak: the clients did not finish; killed", file=sys.stderr)
    ticker.stop()
    settle = time.monotonic() + 3.0  # closed connections finish closing
    while time.monotonic() < settle:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
    end = _sample()
    if trace is not None:
        trace.snapshot("end")
    trimmed = _trimmed_rss_kib()
    stats = json.loads(clients.stdout.read() if clients.stdout else "{}")
    server.close()
    peak = {key: max(s[key] for s in [*samples, start, end]) for key in start}
    print(f"soak: {minutes:g} min, {seq[0]} ticks broadcast, {len(server.connections)} left")
    for key in ("rss_kib", "threads", "fds"):
        print(f"  {key:8} start {start[key]:>8}  peak {peak[key]:>8}  end {end[key]:>8}")
    if trimmed is not None:  # what the C allocator kept but nothing uses (not a leak)
        print(f"  rss_kib after malloc_trim: {trimmed}")
    rss_mib = [round(s["rss_kib"] / 1024) for s in samples]
    print(f"  rss MiB every 5 s: {rss_mib}")
    print("  clients: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))
    if trace is not None:
        trace.report()
    lost = stats.get("lost_ticks", 0) + stats.get("lost_replies", 0)
    return 0 if lost == 0 else 1


# -- the clients -----------------------------------------------------------------


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + n


def reader(name: str, life: float, counts: Counts) -> None:
    from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
    from aurora_dcc.transport.local_socket import LocalSocketChannel

    channel = LocalSocketChannel.connect(name, retry=5)
    last = [-1]
    waiting: dict[str, float] = {}
    lock = threading.Lock()

    def on_message(msg: IpcMessage) -> None:
        if msg.type is IpcMessageType.EVENT:
            seq = msg.data["seq"]
            if last[0] >= 0 and seq != last[0] + 1:
                counts.add("lost_ticks", seq - last[0] - 1)
            last[0] = seq
            counts.add("ticks")
        elif msg.type is IpcMessageType.RESPONSE:
            with lock:
                waiting.pop(str(msg.id), None)
            counts.add("replies")

    channel.on_message(on_message)
    end = time.monotonic() + life
    n = 0
    while time.monotonic() < end and channel.is_connected:
        n += 1
        rid = f"r{n}"
        with lock:
            waiting[rid] = time.monotonic()
        channel.send(IpcMessage.request("echo", {"n": n}, id=rid))
        time.sleep(0.05)
    deadline = time.monotonic() + 5.0
    while waiting and time.monotonic() < deadline and channel.is_connected:
        time.sleep(0.01)
    if not channel.is_connected:
        counts.add("readers_dropped")
    counts.add("lost_replies", len(waiting))
    channel.close()
    counts.add("readers")


def flooder(name: str, life: float, counts: Counts) -> None:
    from aurora_dcc.protocol.message import IpcMessage, IpcMessageType
    from aurora_dcc.transport.local_socket import LocalSocketChannel

    channel = LocalSocketChannel.connect(name, retry=5)
    end = time.monotonic() + life
    while time.monotonic() < end:
        burst = [IpcMessage.request("echo", {"i": i}, id=f"f{i}") for i in range(2000)]
        channel.send_many(burst)
        got = 0
        deadline = time.monotonic() + 10.0
        while got < len(burst) and time.monotonic() < deadline:
            try:
                msg = channel.receive(timeout=max(0.01, deadline - time.monotonic()))
            except Exception:
                break
            if msg.type is IpcMessageType.RESPONSE:
                got += 1
        counts.add("lost_replies", len(burst) - got)
        counts.add("replies", got)
        time.sleep(random.uniform(0.0, 0.5))
    channel.close()
    counts.add("flooders")


def staller(name: str, life: float, counts: Counts, address: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    sock.sendall(_HELLO)
    time.sleep(life)  # never reads meanwhile
    dropped = False
    deadline = time.monotonic() + 5.0  # what the host holds for it takes a moment to read
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(1 << 20):
                dropped = True
                break
    except (socket.timeout, TimeoutError):
        pass  # still served: not far enough behind yet
    except OSError:
        dropped = True
    sock.close()
    counts.add("stallers")
    counts.add("stallers_dropped" if dropped else "stallers_kept")


def dier(counts: Counts, address: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    sock.sendall(_HELLO + b'{"type":"request","id":"x","meth')
    time.sleep(random.uniform(0.0, 0.3))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, as a killed process leaves
    counts.add("diers")


def run_clients(name: str, seconds: float, seed: int) -> int:
    from aurora_dcc.transport.address import resolve_address

    random.seed(seed)
    address = resolve_address(name)
    counts = Counts()
    for key in ("lost_ticks", "lost_replies", "readers_dropped", "stallers_dropped"):
        counts.add(key, 0)
    end = time.monotonic() + seconds
    threads: list[threading.Thread] = []

    def spawn(target: Any, *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception as exc:  # a client that could not even connect
                counts.add(f"failed_{target.__name__}")
                print(f"{target.__name__}: {exc!r}", file=sys.stderr)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    while time.monotonic() < end:
        left = end - time.monotonic()
        threads = [t for t in threads if t.is_alive()]
        if len(threads) < 8:
            roll = random.random()
            if roll < 0.35:
                spawn(reader, name, min(left, random.uniform(3.0, 30.0)), counts)
            elif roll < 0.55:
                spawn(flooder, name, min(left, random.uniform(2.0, 15.0)), counts)
            elif roll < 0.7:
                spawn(staller, name, min(left, random.uniform(5.0, 25.0)), counts, address)
            else:
                spawn(dier, counts, address)
        time.sleep(random.uniform(0.05, 0.5))
    for thread in threads:
        thread.join(40.0)
    print(json.dumps(counts.values))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--tracemalloc",
        nargs="?",
        type=int,
        const=8,
        default=0,
        metavar="FRAMES",
        help="trace the host's allocations (FRAMES per traceback, 8 if omitted)",
    )
    parser.add_argument("--role", choices=["host", "clients"], default="host")
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "clients":
        return run_clients(args.name, args.seconds, args.seed)
    return run_host(args.minutes, args.seed, args.tracemalloc)


if __name__ == "__main__":
    sys.exit(main())
