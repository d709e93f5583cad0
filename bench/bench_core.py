"""Core hot path: ThreadChannel send/receive and message encode/decode.

Measures what per-channel metrics cost by running the same loops with the
real ``IpcChannelMetrics`` and with a no-op stand-in, in the same process,
and prints the ratio. Run: ``python bench/bench_core.py``.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Callable

from aurora_dcc import IpcMessage, ThreadChannel
from aurora_dcc.errors import ShuttingDown
from aurora_dcc.thread_channel import _BoundedQueue

N = 200_000


class QueueWithoutMetrics(_BoundedQueue):
    """``_BoundedQueue`` with the metrics lines taken out: the baseline."""

    def put(self, msg: IpcMessage, timeout: float | None) -> None:
        items = self._items
        with self._lock:
            if self.closed:
                raise ShuttingDown("closed")
            if len(items) >= self.capacity:
                self._wait_for_room(timeout)
            items.append(msg)
            length = len(items)
            if self._item_waiters:
                self._not_empty.notify()
        if length == 1 and self.on_nonempty is not None:
            self.on_nonempty()

    def _pop(self) -> IpcMessage:
        msg = self._items.popleft()
        if self._room_waiters:
            self._not_full.notify()
        if not self._items and self._empty_waiters:
            self._empty.notify_all()
        return msg


def make_pair(metrics: bool) -> tuple[ThreadChannel, ThreadChannel]:
    a, b = ThreadChannel.pair("bench", capacity=N + 1)
    if not metrics:
        for end in (a, b):
            end._inbox = QueueWithoutMetrics(N + 1, end.metrics)
        a._outbox, b._outbox = b._inbox, a._inbox
    return a, b


def same_thread(metrics: bool) -> float:
    a, b = make_pair(metrics)
    msg = IpcMessage.event_message("tick", {"frame": 1})
    started = time.perf_counter()
    for _ in range(N):
        a.send(msg)
        b.try_receive()
    return N / (time.perf_counter() - started)


def across_threads(metrics: bool) -> float:
    a, b = make_pair(metrics)
    msg = IpcMessage.event_message("tick", {"frame": 1})

    def produce() -> None:
        for _ in range(N):
            a.send(msg)

    producer = threading.Thread(target=produce)
    started = time.perf_counter()
    producer.start()
    for _ in range(N):
        b.receive(timeout=10)
    producer.join()
    return N / (time.perf_counter() - started)


def codec_round_trip() -> float:
    msg = IpcMessage.request("scene.info", {"nodes": ["pCube1", "pSphere1"], "verbose": True})
    started = time.perf_counter()
    for _ in range(N):
        IpcMessage.from_json(msg.to_bytes())
    return N / (time.perf_counter() - started)


def best_of(fn: Callable[[], float], runs: int = 5) -> float:
    return max(fn() for _ in range(runs))


def paired(fn: Callable[[bool], float], runs: int = 9) -> tuple[float, float, float]:
    """Best rate with and without metrics, and the median cost of the metrics in %.

    The two run back to back, ``runs`` times: each pair's ratio sees the same
    machine speed, and the median of the ratios is the figure least moved by
    drift (across threads, GIL scheduling makes single runs swing widely).
    """
    with_metrics, without, costs = 0.0, 0.0, []
    for _ in range(runs):
        rate_with, rate_without = fn(True), fn(False)
        with_metrics, without = max(with_metrics, rate_with), max(without, rate_without)
        costs.append((rate_without / rate_with - 1) * 100)
    return with_metrics, without, statistics.median(costs)


def main() -> None:
    print("== core: ThreadChannel and codec (msg/s, best of 9 paired runs) ==")
    for label, fn in (("same thread", same_thread), ("across threads", across_threads)):
        with_metrics, without, cost = paired(fn)
        print(
            f"{label:15s} with metrics {with_metrics:>10,.0f}  without {without:>10,.0f}"
            f"  metrics cost {cost:+.1f}% (median of the pairs)"
        )
    print(f"{'encode+decode':15s} {best_of(codec_round_trip):>23,.0f}")


if __name__ == "__main__":
    main()
