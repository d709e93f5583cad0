"""Benchmark: request -> Blender's main thread -> response, in real Blender under Xvfb.

One Blender (``bench/children/blender_bench_host.py``) serves every variant at
once; this process is the client, and interleaves the variants in blocks so
that machine noise hits them alike. Every handler computes
``len(bpy.data.objects)`` on Blender's main thread.

* ``timer poll 0.0``  socket thread + queue + one persistent ``bpy.app.timers``
  drain at 0.0: the floor of the usual design, the reference of every ratio
* ``blender-mcp style``  TCP, ``bpy.app.timers.register`` per command
* ``poll + wake``  the floor's design plus ``MainLoopWake`` (the mechanism alone)
* ``host, wake``  ``BlenderHost`` (the add-on's host) with the main-loop wake
* ``host, no wake``  ``BlenderHost`` with the wake turned off (the timer poll)

Measured: round trips back-to-back and at random phase (the client waits a
random 0-10 ms before each request), p50 and p99 in ms (the median of a few
runs) and as ratios to the poll floor; a flood of pipelined requests to the
host (with and without the wake) while a 16 ms timer runs (its longest gap, at
rest and during the flood, and the garbage collections meanwhile: a full one
holds the GIL; the floor's drain, which has no time budget, beside it); and
the idle cost: the CPU of a Blender with the host running and
no client against a Blender without it, in the same seconds, from
``/proc/<pid>/stat``.

Needs ``blender`` and ``xvfb-run`` on PATH (Linux; ``apt-get install -y
blender xvfb xauth``); without them it says so and exits 0.

Usage::

    python bench/bench_blender.py [--rounds 1000] [--random 300] [--repeats 3] [--flood 10000]
    python bench/bench_blender.py --quick          # tiny N: does every row still run?
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "children", "blender_bench_host.py")
START_TIMEOUT = 90.0
IO_TIMEOUT = 30.0
WARM_UP = 2.0  # seconds of round trips before measuring
_perf = time.perf_counter

VARIANTS = [
    ("poll", "timer poll 0.0"),
    ("mcp", "blender-mcp style"),
    ("pollwake", "poll + wake"),
    ("wake", "host, wake"),
    ("nowake", "host, no wake"),
]
LABELS = dict(VARIANTS)


def missing() -> Optional[str]:
    """Why Blender cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (Blender under xvfb-run)"
    for tool in ("blender", "xvfb-run"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (apt-get install -y blender xvfb xauth)"
    return None


# -- clients ------------------------------------------------------------------


class FrameClient:
    """Newline-delimited JSON over a Unix socket: one request, wait for its response."""

    def __init__(self, path: str, hello: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(path)
        self.buffer = b""
        self.frames: deque[bytes] = deque()  # received, not yet decoded
        self.next_id = 0
        if hello:
            self.sock.sendall(b'{"type":"hello","data":{"protocol":1,"peer":"bench"}}\n')
            self.read_until(lambda f: f.get("type") == "ready")

    def read_frame(self) -> dict[str, Any]:
        # Splits each chunk once: a flood's responses arrive many to a chunk, and
        # re-slicing the rest after every line would make this client the bottleneck.
        frames = self.frames
        while not frames:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("Blender closed the connection")
            *lines, self.buffer = (self.buffer + chunk).split(b"\n")
            frames.extend(line for line in lines if line)
        frame: dict[str, Any] = json.loads(frames.popleft())
        return frame

    def read_until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            frame = self.read_frame()
            if done(frame):
                return frame

    def frame(self, method: str, data: Any = None) -> bytes:
        self.next_id += 1
        body: dict[str, Any] = {"type": "request", "id": str(self.next_id), "method": method}
        if data is not None:
            body["data"] = data
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    def call(self, method: str, data: Any = None) -> Any:
        self.sock.sendall(self.frame(method, data))
        wanted = str(self.next_id)
        reply = self.read_until(lambda f: f.get("type") == "response" and f.get("id") == wanted)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("data")

    def close(self) -> None:
        self.sock.close()


class McpClient:
    """blender-mcp's client side: a JSON command over TCP, read until the reply parses."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.command = json.dumps({"type": "get_scene_info", "params": {}}).encode()

    def call(self, method: str, data: Any = None) -> Any:
        self.sock.sendall(self.command)
        buffer = b""
        while True:
            chunk = self.sock.recv(8192)
            if not chunk:
                raise EOFError("Blender closed the connection")
            buffer += chunk
            try:
                return json.loads(buffer)
            except ValueError:
                continue

    def close(self) -> None:
        self.sock.close()


# -- Blender ------------------------------------------------------------------


class Blender:
    """One ``blender --factory-startup`` under ``xvfb-run`` running the bench child."""

    def __init__(self, variants: list[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="aurora_bb_")
        self.log_path = os.path.join(self.dir, "blender.log")
        command = [
            "xvfb-run",
            "-a",
            "blender",
            "--factory-startup",
            "--window-geometry",
            "0",
            "0",
            "800",
            "600",
            "--python",
            CHILD,
            "--",
            "--dir",
            self.dir,
            "--variants",
            ",".join(variants),
        ]
        blender_tmp = os.path.join(self.dir, "tmp")  # Blender's session files go with the rest
        os.mkdir(blender_tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["TMPDIR"] = blender_tmp
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        ready_path = os.path.join(self.dir, "ready.json")
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(ready_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Blender did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        with open(ready_path) as f:
            ready = json.load(f)
        self.pid: int = ready["pid"]
        self.addresses: dict[str, str] = ready["addresses"]
        self.errors: dict[str, str] = ready["errors"]

    def log_tail(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-30:])
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """utime + stime of Blender's process, in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5.0)
                sock.connect(os.path.join(self.dir, "control.sock"))
                sock.sendall(b"quit\n")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- measurements -------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@dataclass
class Latency:
    """One variant's round-trip times, in seconds."""

    back_to_back: list[float] = field(default_factory=list)
    random_phase: list[float] = field(default_factory=list)


def warm_up(clients: dict[str, Any]) -> None:
    """Round trips for a while: Blender's first seconds are slow (first draws, caches)."""
    until = time.monotonic() + WARM_UP
    while time.monotonic() < until:
        for client in clients.values():
            client.call("bench.ping")


def measure(clients: dict[str, Any], rounds: int, random_rounds: int) -> dict[str, Latency]:
    """Interleaved blocks of each variant (rotating order): back-to-back, then random phase."""
    results = {key: Latency() for key in clients}
    keys = list(clients)
    rng = random.Random(1)
    for phase, count, block in (("b2b", rounds, 50), ("random", random_rounds, 20)):
        for index in range(0, count, block):
            shift = (index // block) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                call = clients[key].call
                samples = results[key].back_to_back if phase == "b2b" else results[key].random_phase
                for _ in range(min(block, count - index)):
                    if phase == "random":
                        time.sleep(rng.uniform(0.0, 0.010))
                    started = _perf()
                    call("bench.ping")
                    samples.append(_perf() - started)
    return results


def summarize(runs: list[dict[str, Latency]]) -> dict[str, dict[str, float]]:
    """Per variant: p50 and p99 of each phase, the median over the runs (seconds)."""
    figures: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        row: dict[str, float] = {}
        for phase in ("b2b", "random"):
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                values = [
                    percentile(r[key].back_to_back if phase == "b2b" else r[key].random_phase, q)
                    for r in runs
                ]
                row[f"{phase}_{name}"] = statistics.median(values)
        figures[key] = row
    return figures


def flood(control: FrameClient, path: str, hello: bool, count: int) -> dict[str, float]:
    """``count`` pipelined requests on a new connection while the 16 ms frame timer runs."""
    client = FrameClient(path, hello)
    payload = b"".join(client.frame("bench.ping") for _ in range(count))
    control.call("frames.start")
    time.sleep(0.2)
    started = _perf()
    writer = threading.Thread(target=client.sock.sendall, args=(payload,))
    writer.start()
    # Count frames rather than decode them: a client slower than Blender would
    # fill the socket and make Blender's writes wait, measuring the client.
    received = client.buffer.count(b"\n") + len(client.frames)
    while received < count:
        chunk = client.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("Blender closed the connection")
        received += chunk.count(b"\n")
    elapsed = _perf() - started
    writer.join()
    time.sleep(0.1)
    stats = control.call("frames.stop")
    client.close()
    young, middle, full = stats["collections"]
    return {
        "max_gap_ms": stats["max_gap_ms"],
        "seconds": elapsed,
        "rate": count / elapsed,
        "young_gcs": young,
        "middle_gcs": middle,
        "full_gcs": full,
        "longest_full_gc_ms": stats["longest_full_gc_ms"],
    }


def at_rest(control: FrameClient, seconds: float) -> float:
    control.call("frames.start")
    time.sleep(seconds)
    gap: float = control.call("frames.stop")["max_gap_ms"]
    return gap


def settle(*blenders: Blender, limit: float = 30.0) -> None:
    """Wait until every Blender is past its start-up work (under 10 % of a core for 1 s)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [b.cpu_seconds() for b in blenders]
        time.sleep(1.0)
        if all(b.cpu_seconds() - cpu < 0.1 for b, cpu in zip(blenders, before)):
            return


def idle_cost(seconds: float) -> tuple[float, float]:
    """CPU % of one core: Blender with the host and no client, Blender alone, same seconds."""
    with_host = Blender(["wake"])
    try:
        alone = Blender([])
        try:
            settle(with_host, alone)
            start = (with_host.cpu_seconds(), alone.cpu_seconds())
            started = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - started
            end = (with_host.cpu_seconds(), alone.cpu_seconds())
        finally:
            alone.stop()
    finally:
        with_host.stop()
    return 100.0 * (end[0] - start[0]) / wall, 100.0 * (end[1] - start[1]) / wall


# -- report -------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{1000.0 * seconds:8.3f}"


def report(figures: dict[str, dict[str, float]]) -> None:
    base = figures["poll"]
    print(
        f"{'variant':<20} {'b2b p50':>8} {'p99':>8} {'x p50':>6} {'x p99':>6}"
        f"   {'rand p50':>8} {'p99':>8} {'x p50':>6} {'x p99':>6}   (ms; x = / timer poll)"
    )
    for key, row in figures.items():
        text = f"{LABELS[key]:<20}"
        for phase in ("b2b", "random"):
            p50, p99 = row[f"{phase}_p50"], row[f"{phase}_p99"]
            ratio50, ratio99 = p50 / base[f"{phase}_p50"], p99 / base[f"{phase}_p99"]
            text += f" {ms(p50)} {ms(p99)} {ratio50:6.2f} {ratio99:6.2f}  "
        print(text)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="back-to-back per variant")
    parser.add_argument("--random", type=int, default=300, help="random-phase per variant")
    parser.add_argument("--flood", type=int, default=10_000, help="pipelined requests")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU sampling")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the median is printed")
    parser.add_argument("--quick", action="store_true", help="tiny N, one run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.random, args.flood, args.idle, args.repeats = 100, 40, 1000, 2.0, 1
    reason = missing()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    blender = Blender([key for key, _ in VARIANTS])
    try:
        for key, error in blender.errors.items():
            print(f"{LABELS[key]}: not available ({error})")
        clients: dict[str, Any] = {}
        for key, _ in VARIANTS:
            address = blender.addresses.get(key)
            if address is None:
                continue
            clients[key] = (
                McpClient(address)
                if key == "mcp"
                else FrameClient(address, hello=key in ("wake", "nowake"))
            )
        if "poll" not in clients:
            print("FAILED: the timer poll floor did not start")
            return 1
        print(
            f"Blender {blender.pid}: {args.rounds} back-to-back + {args.random} random-phase"
            f" round trips per variant, interleaved; median of {args.repeats} runs"
        )
        warm_up(clients)
        runs = [measure(clients, args.rounds, args.random) for _ in range(args.repeats)]
        figures = summarize(runs)
        report(figures)
        control = clients["poll"]
        rest = at_rest(control, 1.0)
        print(f"\n16 ms frame timer, longest gap: at rest {rest:.1f} ms")
        floods: dict[str, dict[str, float]] = {}
        for key in ("wake", "nowake", "poll"):
            if key in clients:
                hello = key in ("wake", "nowake")
                floods[key] = flood(control, blender.addresses[key], hello, args.flood)
                f = floods[key]
                print(
                    f"  during {args.flood:,} pipelined requests to {LABELS[key]!r}: "
                    f"{f['max_gap_ms']:.1f} ms ({f['rate']:,.0f} req/s; garbage collections"
                    f" {f['young_gcs']:.0f}/{f['middle_gcs']:.0f}/{f['full_gcs']:.0f} by"
                    f" generation, the longest full one {f['longest_full_gc_ms']:.1f} ms)"
                )
        for client in clients.values():
            client.close()
    finally:
        blender.stop()
    with_host, alone = idle_cost(args.idle)
    print(
        f"\nidle CPU over {args.idle:.0f} s (% of one core): Blender + host {with_host:.2f},"
        f" Blender alone {alone:.2f}, difference {with_host - alone:+.2f} points"
    )
    checks = [("idle cost <= +0.5 points", with_host - alone <= 0.5)]
    if "wake" in figures:
        w = figures["wake"]
        checks += [
            ("wake b2b p50 <= 0.5 ms", w["b2b_p50"] <= 0.0005),
            ("wake b2b p99 <= 2 ms", w["b2b_p99"] <= 0.002),
        ]
    if "nowake" in figures:
        ratio = figures["nowake"]["b2b_p50"] / figures["poll"]["b2b_p50"]
        checks.append((f"no wake b2b p50 <= 1.1x poll ({ratio:.2f}x)", ratio <= 1.1))
    if "wake" in floods:
        checks.append(("flood frame gap <= 40 ms", floods["wake"]["max_gap_ms"] <= 40.0))
    print("targets: " + "; ".join(f"{text}: {'met' if ok else 'MISSED'}" for text, ok in checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
