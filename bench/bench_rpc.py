"""RPC over a ThreadChannel pair: what ``Peer`` costs on top of the transport.

The baseline is the least an RPC layer can do on the same transport: the
server answers every request straight from ``on_message``; the caller keeps a
dict of id -> Event and waits on it. ``Peer`` adds handler lookup, params
checking, the shutdown guard, error handling, timeouts and metrics. Both run in
this process, alternately, and the ratio of medians is printed.

Run: ``python bench/bench_rpc.py`` (numbers are noisy on a shared machine).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any, Callable

from aurora_dcc import IpcMessage, Peer, ThreadChannel
from aurora_dcc.protocol.message import new_message_id

N = 3_000
ROUNDS = 5


def baseline_pair() -> tuple[Callable[[Any], Any], Callable[[], None]]:
    a, b = ThreadChannel.pair("bench-raw")
    a.on_message(lambda msg: a.send(IpcMessage.response(msg.id, msg.data)))
    pending: dict[str, list[Any]] = {}
    lock = threading.Lock()

    def on_response(msg: IpcMessage) -> None:
        with lock:
            slot = pending.pop(msg.id or "")
        slot.append(msg.data)
        slot[0].set()

    b.on_message(on_response)

    def call(data: Any) -> Any:
        msg_id = new_message_id()
        slot: list[Any] = [threading.Event()]
        with lock:
            pending[msg_id] = slot
        b.send(IpcMessage.request("echo", data, id=msg_id))
        if not slot[0].wait(5.0):
            raise TimeoutError
        return slot[1]

    return call, a.shutdown


def peer_pair() -> tuple[Callable[[Any], Any], Callable[[], None]]:
    a, b = ThreadChannel.pair("bench-peer")
    server, client = Peer(a), Peer(b)
    server.register("echo", lambda x: x)
    return lambda data: client.request("echo", [data]), a.shutdown


def sequential(call: Callable[[Any], Any]) -> float:
    start = time.perf_counter()
    for i in range(N):
        call(i)
    return (time.perf_counter() - start) / N


def pipelined_peer() -> float:
    a, b = ThreadChannel.pair("bench-async")
    server, client = Peer(a), Peer(b)
    server.register("echo", lambda x: x)
    start = time.perf_counter()
    futures = [client.request_async("echo", [i]) for i in range(N)]
    for future in futures:
        future.result(10.0)
    elapsed = (time.perf_counter() - start) / N
    a.shutdown()
    return elapsed


def main() -> None:
    raw_times, peer_times, async_times = [], [], []
    for _ in range(ROUNDS):
        for make, times in ((baseline_pair, raw_times), (peer_pair, peer_times)):
            call, close = make()
            sequential(call)  # warm up
            times.append(sequential(call))
            close()
        async_times.append(pipelined_peer())
    raw, peer, pipelined = (statistics.median(t) for t in (raw_times, peer_times, async_times))
    print(f"round trip, minimal RPC on ThreadChannel: {raw * 1e6:7.1f} us")
    print(f"round trip, Peer.request:                 {peer * 1e6:7.1f} us  ({peer / raw:.2f}x)")
    print(f"Peer.request_async, {N} in flight:      {pipelined * 1e6:7.1f} us per request")


if __name__ == "__main__":
    main()
