"""Benchmark: worker thread -> Qt main thread -> reply, and one-way floods.

Measured in one process, interleaved so machine noise hits every variant alike:

* round trips (worker sends, a main-thread handler releases a lock the worker
  waits on), p50/p99 in microseconds:
  - ``bare postEvent``       ``QCoreApplication.postEvent`` to a QObject's ``customEvent``
  - ``bare queued signal``   a no-argument signal, queued connection to a slot method
  - ``bare signal to function``  the same signal connected to a plain Python function
  - ``bare signal to release``  the same signal connected to the worker's
    ``lock.release`` itself: no handler runs, only Qt's wake (a floor, not a
    way to run code on the main thread)
  - ``DccIpcChannel.send``   ``send(msg)`` -> ``on_message`` handler
  - ``call_in_main_thread``  the function runs on the main thread, its result comes back

  Each is set against the best bare mechanism that runs a handler (the first
  three), and against Qt's wake alone.
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
from aurora_dcc.main_thread.channel import DccIpcChannel

_perf = time.perf_counter
_PING = QtCore.QEvent.Type(QtCore.QEvent.registerEventType())
_REPLY_TIMEOUT = 10.0
_app: Any = None


class _MainThreadEnd(QtCore.QObject):
    """The bare mechanisms' receiver, and the way a worker stops the main loop."""

    ping = QtCore.Signal()
    ping_value = QtCore.Signal(object)
    stop = QtCore.Signal()
    ping_function = QtCore.Signal()  # connected to a plain function (no slot method)

    def __init__(self, loop: QtCore.QEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.on_ping: Callable[[], None] = lambda: None
        self.on_value: Callable[[Any], None] = lambda value: None
        self.ping.connect(self._slot, QtCore.Qt.QueuedConnection)
        self.ping_value.connect(self._value_slot, QtCore.Qt.QueuedConnection)
        self.stop.connect(loop.quit, QtCore.Qt.QueuedConnection)

    def customEvent(self, event: QtCore.QEvent) -> None:
        # The fastest way to receive a posted event: Qt calls customEvent for
        # user event types, with no Python-level event() override and type() check.
        self.on_ping()

    def _slot(self) -> None:
        self.on_ping()

    def _value_slot(self, value: Any) -> None:
        self.on_value(value)

    def stop_from_worker(self) -> None:
        self.stop.emit()


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
    elif kind == "bare signal to function":

        def handler() -> None:
            release()

        end.ping_function.connect(handler, QtCore.Qt.QueuedConnection)
        unsubscribe = end.ping_function.disconnect
        send = end.ping_function.emit
    elif kind == "bare signal to release":
        end.ping_function.connect(release, QtCore.Qt.QueuedConnection)
        unsubscribe = end.ping_function.disconnect
        send = end.ping_function.emit
    elif kind == "DccIpcChannel.send":
        unsubscribe = channel.on_message(lambda m: release())

        def send() -> None:
            channel.send(msg)

    elif kind == "call_in_main_thread":
        call = channel.call_in_main_thread

        def noop() -> None:
            pass

        def send() -> None:
            call(noop, timeout=_REPLY_TIMEOUT)  # returns with the reply
            release()  # (the loop below takes it back at once: ~0.1 us, left in)

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
    "bare signal to function",
    "bare signal to release",
    "DccIpcChannel.send",
    "call_in_main_thread",
)
BARE = ("bare postEvent", "bare queued signal", "bare signal to function")
"""The bare mechanisms that run a handler on the main thread."""
WAKE_ALONE = "bare signal to release"
FLOOD_KINDS = ("DccIpcChannel.send", "DccIpcChannel.emit", "bare queued signal")


def run(rounds: int, flood: int, repeats: int = 10) -> dict[str, Any]:
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
    wake_alone = round_trips[WAKE_ALONE]["p50_us"]
    for stats in round_trips.values():
        stats["p50_vs_best_bare"] = stats["p50_us"] / best_bare
        stats["p50_vs_wake_alone"] = stats["p50_us"] / wake_alone
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
            f"  {kind:<24} p50 {stats['p50_us']:7.1f} us  p99 {stats['p99_us']:8.1f} us"
            f"  p50 x{stats['p50_vs_best_bare']:.2f} of best bare,"
            f" x{stats['p50_vs_wake_alone']:.2f} of Qt's wake alone"
        )
    print(f"one-way flood ({args.flood} messages) to a main-thread handler")
    for kind, stats in result["flood"].items():
        print(
            f"  {kind:<24} {stats['msg_per_s']:10,.0f} msg/s"
            f"  5 ms timer late by at most {stats['timer_late_ms']:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
