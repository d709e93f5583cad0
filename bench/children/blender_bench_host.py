"""Runs inside Blender: the serving side of ``bench/bench_blender.py``.

Usage::

    xvfb-run -a blender --factory-startup --python blender_bench_host.py -- \\
        --dir DIR --variants poll,pollwake,mcp,wake,nowake

Each variant answers one request with one response computed on Blender's main
thread (``len(bpy.data.objects)``). All but ``mcp`` speak the aurora_dcc
frames (newline-delimited JSON) on a Unix socket ``DIR/<variant>.sock``:

* ``poll``: the usual design's floor: a socket thread per client puts each
  request in a queue; one persistent ``bpy.app.timers`` function at 0.0
  drains it on the main thread and writes the response.
* ``pollwake``: the same, and the socket thread wakes the main loop with
  ``MainLoopWake`` after queueing (the mechanism alone, no host around it).
* ``mcp``: the blender-mcp add-on's way: a TCP server on 127.0.0.1, JSON with
  no framing, ``bpy.app.timers.register(fn, first_interval=0.0)`` per command
  from the socket thread, the response sent from the main thread.
* ``wake`` / ``nowake``: ``aurora_dcc.hosts.blender.BlenderHost`` with and
  without the wake, serving ``bench.ping``.

``poll`` also serves ``frames.start`` / ``frames.stop``: a 16 ms persistent
timer that records when it ran (``frames.stop`` returns the longest gap), so
the bench can watch Blender's frame timing during a flood.

When everything listens, ``DIR/ready.json`` appears with Blender's pid and the
addresses. ``DIR/control.sock`` takes one line, ``quit``, and the process
exits at once (``os._exit``: the bench is done with it).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import queue
import socket
import sys
import threading
import time
from typing import Any, Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import bpy  # noqa: E402 - after the path: runs only inside Blender

from aurora_dcc.hosts.blender_wake import MainLoopWake  # noqa: E402

log = logging.getLogger("blender_bench_host")
_perf = time.perf_counter
_keep: list[Any] = []  # servers and hosts live as long as Blender


def work() -> int:
    """What every variant's handler does on the main thread."""
    return len(bpy.data.objects)


def listen_unix(path: str) -> socket.socket:
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    return server


def serve_forever(server: socket.socket, per_client: Callable[[socket.socket], None]) -> None:
    def accept_loop() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=per_client, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


# -- poll / pollwake: socket thread + queue + one persistent timer -----------


class FrameTimer:
    """A 16 ms persistent timer recording when it ran (a stand-in for a UI that animates).

    It also counts the garbage collections meanwhile (any thread): a full one
    holds the GIL, so Blender's main thread runs no Python while it lasts.
    """

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.running = False
        self.collections = [0, 0, 0]  # per generation
        self.longest_full = 0.0  # seconds, the longest generation-2 collection
        self._collecting_since = 0.0

    def start(self) -> None:
        self.stamps = []
        self.collections = [0, 0, 0]
        self.longest_full = 0.0
        if self.watch_gc not in gc.callbacks:
            gc.callbacks.append(self.watch_gc)
        if not self.running:
            self.running = True
            bpy.app.timers.register(self.tick, first_interval=0.016, persistent=True)

    def watch_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._collecting_since = _perf()
            return
        generation = info["generation"]
        self.collections[generation] += 1
        if generation == 2:
            self.longest_full = max(self.longest_full, _perf() - self._collecting_since)

    def tick(self) -> Optional[float]:
        if not self.running:
            return None
        self.stamps.append(_perf())
        return 0.016

    def stop(self) -> dict[str, Any]:
        self.running = False
        if self.watch_gc in gc.callbacks:
            gc.callbacks.remove(self.watch_gc)
        stamps = self.stamps
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        return {
            "frames": len(stamps),
            "max_gap_ms": 1000.0 * max(gaps) if gaps else None,
            "collections": self.collections,
            "longest_full_gc_ms": 1000.0 * self.longest_full,
        }


frames = FrameTimer()


class QueuePoll:
    """``poll`` and ``pollwake``: the drain runs in a persistent timer at 0.0."""

    def __init__(self, path: str, wake: Optional[MainLoopWake]) -> None:
        self.queue: queue.SimpleQueue[tuple[socket.socket, dict[str, Any]]] = queue.SimpleQueue()
        self.wake = wake
        self.pending = False  # with a wake: set by the socket thread, cleared by the drain
        serve_forever(listen_unix(path), self.read_client)
        bpy.app.timers.register(self.drain, first_interval=0.0, persistent=True)

    def read_client(self, conn: socket.socket) -> None:
        buffer = b""
        put = self.queue.put
        wake = self.wake
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line:
                    put((conn, json.loads(line)))
            if wake is not None:
                self.pending = True
                wake.wake()  # sends nothing while an earlier signal is unhandled

    def drain(self) -> float:
        if self.wake is not None:
            self.wake.served()  # this timer ran: the next wake signals again
            if not self.pending:
                return 0.0
            self.pending = False
        get = self.queue.get_nowait
        while True:
            try:
                conn, frame = get()
            except queue.Empty:
                return 0.0
            method = frame.get("method")
            if method == "frames.start":
                frames.start()
                data: Any = True
            elif method == "frames.stop":
                data = frames.stop()
            else:
                data = work()
            reply = {"type": "response", "id": frame.get("id"), "data": data}
            conn.sendall(json.dumps(reply).encode() + b"\n")


# -- mcp: what the blender-mcp add-on does ------------------------------------


def mcp_client(conn: socket.socket) -> None:
    buffer = b""
    while True:
        data = conn.recv(8192)
        if not data:
            return
        buffer += data
        try:
            command = json.loads(buffer.decode("utf-8"))
        except json.JSONDecodeError:
            continue
        buffer = b""

        def execute_wrapper(command: Any = command) -> None:
            response = {"status": "success", "result": {"objects": work()}}
            conn.sendall(json.dumps(response).encode("utf-8"))

        bpy.app.timers.register(execute_wrapper, first_interval=0.0)


def start_mcp() -> str:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    serve_forever(server, mcp_client)
    return f"127.0.0.1:{server.getsockname()[1]}"


# -- wake / nowake: our host --------------------------------------------------


def start_host(path: str, wake: bool) -> str:
    from aurora_dcc.hosts.blender import BlenderHost

    host = BlenderHost(path, wake=wake, export_env=False)
    host.register("bench.ping", work)
    _keep.append(host)
    return path


# -- control ------------------------------------------------------------------


def control(conn: socket.socket) -> None:
    if conn.recv(64).strip() == b"quit":
        os._exit(0)


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--variants", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    addresses: dict[str, str] = {}
    errors: dict[str, str] = {}
    for variant in filter(None, args.variants.split(",")):
        path = os.path.join(args.dir, variant + ".sock")
        try:
            if variant == "poll":
                _keep.append(QueuePoll(path, None))
            elif variant == "pollwake":
                wake = MainLoopWake()
                if not wake.install():
                    raise RuntimeError("MainLoopWake.install() refused")
                _keep.append(QueuePoll(path, wake))
            elif variant == "mcp":
                path = start_mcp()
            elif variant in ("wake", "nowake"):
                start_host(path, wake=variant == "wake")
            else:
                raise ValueError(f"unknown variant {variant!r}")
        except Exception as exc:
            errors[variant] = f"{type(exc).__name__}: {exc}"
            continue
        addresses[variant] = path
    serve_forever(listen_unix(os.path.join(args.dir, "control.sock")), control)
    ready = {"pid": os.getpid(), "addresses": addresses, "errors": errors}
    tmp = os.path.join(args.dir, "ready.tmp")
    with open(tmp, "w") as f:
        json.dump(ready, f)
    os.replace(tmp, os.path.join(args.dir, "ready.json"))


main()
