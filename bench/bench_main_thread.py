"""Benchmark: worker thread -> Qt main thread -> reply, and one-way floods.

Measured in one process, interleaved so machine noise hits every variant alike:

* round trips (worker sends, a main-thread handler releases a lock the worker
  waits on), p50/p99 in microseconds:
  - ``bare postEvent``       ``QCoreApplication.postEvent`` to a QObject on the main thread
  - ``bare queued signal``   a no-argument signal with a queued connection
  - ``DccIpcChannel.send``   ``send(msg)`` -> ``on_message`` handler
  - ``call_in_main_thread``  the function runs on the main thread, its result comes back
* one-way flood: messages/s delivered to a main-thread handler (prebuilt
  messages, then ``emit()`` building each message), beside a queued signal per
  message; and how late a 5 ms ``QTimer`` on the main thread fired meanwhile.

Usage::

    python bench/bench_main_thread.py [--rounds 3000] [--flood 200000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Optional

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qtpy import QtCore

from aurora_dcc import IpcMessage, IpcMessageType
from aurora_dcc.dcc_channel import DccIpcChannel

_perf = time.perf_counter
_PING = QtCore.QEvent.Type(QtCore.QEvent.registerEventType())
_STOP = QtCore.QEvent.Type(QtCore.QEvent.registerEventType())
_REPLY_TIMEOUT = 10.0
_app: Any = None


class _MainThreadEnd(QtCore.QObject):
    """The bare mechanisms' receiver, and the way a worker stops the main loop."""

    ping = QtCore.Signal()
    ping_value = QtCore.Signal(object)

    def __init__(self, loop: QtCore.QEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.on_ping: Callable[[], None] = lambda: None
        self.on_value: Callable[[Any], None] = lambda value: None
        self.ping.connect(self._slot, QtCore.Qt.QueuedConnection)
        self.ping_value.connect(self._value_slot, QtCore.Qt.QueuedConnection)

    def event(self, event: QtCore.QEvent) -> bool:
        kind = event.type()
        if kind == _PING:
            self.on_ping()
            return True
        if kind == _STOP:
            self.loop.quit()
            return True
        return bool(super().event(event))

    def _slot(self) -> None:
        self.on_ping()

    def _value_slot(self, value: Any) -> None:
        self.on_value(value)

    def stop_from_worker(self) -> None:
        QtCore.QCoreApplication.postEvent(self, QtCore.QEvent(_STOP))


def _run_worker(end: _MainThreadEnd, work: Callable[[], None]) -> None:
    """Run ``work`` on a worker thread while the main thread runs the Qt loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            end.stop_from_worker()

    thread = threading.Thread(target=target, name="bench-worker")
    thread.start()
    end.loop.exec()
    thread.join()
    if errors:
        raise errors[0]


def _round_trips(end: _MainThreadEnd, channel: DccIpcChannel, kind: str, count: int) -> list[float]:
    reply = threading.Lock()
    reply.acquire()
    release = reply.release
    msg = IpcMessage(IpcMessageType.EVENT, {"n": 1}, event="ping")
    unsubscribe: Optional[Callable[[], None]] = None
    send: Callable[[], None]
    if kind == "bare postEvent":
        end.on_ping = release
        post, event_type = QtCore.QCoreApplication.postEvent, _PING

        def send() -> None:
            post(end, QtCore.QEvent(event_type))

    elif kind == "bare queued signal":
        end.on_ping = release
        send = end.ping.emit
    elif kind == "DccIpcChannel.send":
        unsubscribe = channel.on_message(lambda m: release())

        def send() -> None:
            channel.send(msg)

    elif kind == "call_in_main_thread":
        call = channel.call_in_main_thread

        def noop() -> None:
            pass

        def send() -> None:
            call(noop, timeout=_REPLY_TIMEOUT)
            release()

    else:
        raise ValueError(kind)
    samples: list[float] = []

    def work() -> None:
        acquire = reply.acquire
        for _ in range(count):
            start = _perf()
            send()
            if not acquire(timeout=_REPLY_TIMEOUT):
                raise TimeoutError(f"{kind}: no reply within {_REPLY_TIMEOUT}s")
            samples.append(_perf() - start)

    try:
        _run_worker(end, work)
    finally:
        if unsubscribe is not None:
            unsubscribe()
    return samples


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _flood(end: _MainThreadEnd, channel: DccIpcChannel, kind: str, count: int) -> dict[str, float]:
    """Deliver ``count`` messages one way; rate, and the 5 ms timer's worst lateness."""
    done = threading.Event()
    received = [0]

    def on_message(_: Any) -> None:
        received[0] += 1
        if received[0] == count:
            done.set()

    unsubscribe: Optional[Callable[[], None]] = None
    if kind == "bare queued signal":
        end.on_value = on_message
    else:
        unsubscribe = channel.on_message(on_message)
    prebuilt = [IpcMessage(IpcMessageType.EVENT, {"i": i}, event="tick") for i in range(count)]
    lateness = [0.0]
    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.PreciseTimer)
    timer.setInterval(5)
    last = [_perf()]

    def on_tick() -> None:
        now = _perf()
        lateness[0] = max(lateness[0], now - last[0] - 0.005)
        last[0] = now

    timer.timeout.connect(on_tick)
    elapsed = [0.0]

    def work() -> None:
        start = _perf()
        if kind == "DccIpcChannel.send":
            send = channel.send
            for msg in prebuilt:
                send(msg)
        elif kind == "DccIpcChannel.emit":
            emit = channel.emit
            for i in range(count):
                emit("tick", {"i": i})
        else:
            emit_value = end.ping_value.emit
            for msg in prebuilt:
                emit_value(msg)
        if not done.wait(120.0):
            raise TimeoutError(f"{kind}: {received[0]} of {count} delivered")
        elapsed[0] = _perf() - start

    timer.start()
    last[0] = _perf()
    try:
        _run_worker(end, work)
    finally:
        timer.stop()
        if unsubscribe is not None:
            unsubscribe()
    return {"msg_per_s": count / elapsed[0], "timer_late_ms": lateness[0] * 1000.0}


ROUND_TRIP_KINDS = (
    "bare postEvent",
    "bare queued signal",
    "DccIpcChannel.send",
    "call_in_main_thread",
)
BARE = ("bare postEvent", "bare queued signal")
FLOOD_KINDS = ("DccIpcChannel.send", "DccIpcChannel.emit", "bare queued signal")


def run(rounds: int, flood: int, repeats: int = 3) -> dict[str, Any]:
    # The application of an earlier benchmark in the same run, or a new one (kept until exit).
    global _app
    _app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    loop = QtCore.QEventLoop()
    end = _MainThreadEnd(loop)
    channel = DccIpcChannel("bench", capacity=10_000)
    samples: dict[str, list[float]] = {kind: [] for kind in ROUND_TRIP_KINDS}
    try:
        for kind in ROUND_TRIP_KINDS:  # warm-up
            _round_trips(end, channel, kind, 200)
        for _ in range(repeats):
            for kind in ROUND_TRIP_KINDS:
                samples[kind] += _round_trips(end, channel, kind, max(1, rounds // repeats))
        floods = {kind: _flood(end, channel, kind, flood) for kind in FLOOD_KINDS}
    finally:
        channel.shutdown()
    round_trips: dict[str, dict[str, float]] = {}
    for kind, values in samples.items():
        values.sort()
        round_trips[kind] = {
            "p50_us": _percentile(values, 0.50) * 1e6,
            "p99_us": _percentile(values, 0.99) * 1e6,
        }
    best_bare = min(round_trips[kind]["p50_us"] for kind in BARE)
    for stats in round_trips.values():
        stats["p50_vs_best_bare"] = stats["p50_us"] / best_bare
    return {"round_trip": round_trips, "flood": floods, "flood_messages": flood}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000, help="round trips per variant")
    parser.add_argument("--flood", type=int, default=200_000, help="messages per flood")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.flood)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"worker -> main thread -> reply ({args.rounds} round trips each)")
    for kind, stats in result["round_trip"].items():
        print(
            f"  {kind:<22} p50 {stats['p50_us']:7.1f} us  p99 {stats['p99_us']:8.1f} us"
            f"  p50 x{stats['p50_vs_best_bare']:.2f} of best bare"
        )
    print(f"one-way flood ({args.flood} messages) to a main-thread handler")
    for kind, stats in result["flood"].items():
        print(
            f"  {kind:<22} {stats['msg_per_s']:10,.0f} msg/s"
            f"  5 ms timer late by at most {stats['timer_late_ms']:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
