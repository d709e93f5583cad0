"""Packed mode: a request to a backend in a child process, in both transports.

Compares ``BackendHandle.request`` over the local socket (the default) and
over the legacy stdin/stdout pipes with the floor: a hand-written NDJSON
request/response over a child's stdin/stdout (no ids table, no threads, no
protocol rules; the parent writes a line and reads a line). All three run in
this process tree, alternately, and the ratio of medians is printed. Also
prints how long ``spawn_backend`` takes to have a backend ready.

Run: ``python bench/bench_packed.py`` (numbers are noisy on a shared machine).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from aurora_dcc.process.backend import spawn_backend  # noqa: E402

CHILD = os.path.join(HERE, "children", "packed_echo.py")
N = 2_000
ROUNDS = 3


def raw_backend() -> tuple[Callable[[Any], Any], Callable[[], None]]:
    proc = subprocess.Popen(
        [sys.executable, CHILD, "raw"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    write, flush, readline = proc.stdin.write, proc.stdin.flush, proc.stdout.readline
    counter = iter(range(1 << 62))

    def call(data: Any) -> Any:
        msg_id = str(next(counter))
        write(
            json.dumps({"type": "request", "id": msg_id, "method": "echo", "data": data}).encode()
            + b"\n"
        )
        flush()
        reply = json.loads(readline())
        assert reply["id"] == msg_id
        return reply["data"]

    def close() -> None:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10.0)
        proc.stdout.close()  # type: ignore[union-attr]

    return call, close


def packed_backend(mode: str) -> Callable[[], tuple[Callable[[Any], Any], Callable[[], None]]]:
    def make() -> tuple[Callable[[Any], Any], Callable[[], None]]:
        backend = spawn_backend([sys.executable, CHILD, "packed"], mode=mode)
        return (lambda data: backend.request("echo", [data], timeout=10.0)), backend.stop

    return make


def sequential(call: Callable[[Any], Any]) -> float:
    start = time.perf_counter()
    for i in range(N):
        call({"i": i, "name": "pCube1"})
    return (time.perf_counter() - start) / N


def main() -> None:
    makers = {
        "raw": raw_backend,
        "local_socket": packed_backend("local_socket"),
        "legacy": packed_backend("legacy"),
    }
    times: dict[str, list[float]] = {name: [] for name in makers}
    spawn: list[float] = []
    for _ in range(ROUNDS):
        for name, make in makers.items():
            started = time.perf_counter()
            call, close = make()
            if name != "raw":
                spawn.append(time.perf_counter() - started)
            sequential(call)  # warm up
            times[name].append(sequential(call))
            close()
    medians = {name: statistics.median(t) for name, t in times.items()}
    raw = medians["raw"]
    print(f"{'round trip, hand-written NDJSON over stdio:':44}{raw * 1e6:7.1f} us")
    for name in ("local_socket", "legacy"):
        value = medians[name]
        label = f"round trip, BackendHandle.request {name}:"
        print(f"{label:44}{value * 1e6:7.1f} us  ({value / raw:.2f}x)")
    print(f"{'spawn_backend until ready (median):':44}{statistics.median(spawn) * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
