"""DccIpcChannel: delivery on the Qt main thread, in a real event loop (pytest-qt).

Workers are real threads; the test's thread is the Qt main thread and keeps the
loop running with ``qtbot.waitUntil`` while they work.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from qt_helpers import in_thread
from qtpy import QtCore

from aurora_dcc import ChannelTimeout, IpcMessage, ShuttingDown
from aurora_dcc.channel.waker import Waker
from aurora_dcc.errors import SendFailed
from aurora_dcc.main_thread.channel import DccIpcChannel


@pytest.fixture
def channel(qapp: Any) -> Iterator[DccIpcChannel]:
    ch = DccIpcChannel("test-dcc")
    yield ch
    ch.shutdown()


class ManualWaker(Waker):
    """A host without Qt: the test thread is its main thread and runs wakes itself."""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.wakes = 0
        self.woken = threading.Event()
        self.closed = False
        self.callback: Callable[[], None] = lambda: None

    def bind(self, callback: Callable[[], None], on_quit: Callable[[], None]) -> None:
        self.callback = callback

    def wake(self) -> None:
        self.wakes += 1
        self.woken.set()

    def on_main_thread(self) -> bool:
        return threading.get_ident() == self.main

    def close(self) -> None:
        self.closed = True


def start_thread(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_handlers_run_on_the_main_thread_in_order_for_8_senders_and_lose_nothing(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    senders, per_sender = 8, 25_000  # 200,000 messages
    main_thread = QtCore.QThread.currentThread()
    last_seq = [-1] * senders
    seen = [0]
    wrong_thread = [0]
    out_of_order: list[tuple[int, int, int]] = []

    def on_message(msg: IpcMessage) -> None:
        if QtCore.QThread.currentThread() != main_thread:
            wrong_thread[0] += 1
        sender, seq = msg.data["s"], msg.data["i"]
        if seq != last_seq[sender] + 1:
            out_of_order.append((sender, last_seq[sender], seq))
        last_seq[sender] = seq
        seen[0] += 1

    channel.on_message(on_message)
    start = threading.Barrier(senders)

    def send_all(sender: int) -> None:
        start.wait()
        for i in range(per_sender):
            channel.emit("tick", {"s": sender, "i": i})

    threads = [start_thread(lambda s=s: send_all(s)) for s in range(senders)]
    qtbot.waitUntil(lambda: seen[0] == senders * per_sender, timeout=90_000)
    for thread in threads:
        thread.join(5.0)
    assert wrong_thread[0] == 0
    assert out_of_order == []
    assert last_seq == [per_sender - 1] * senders
    snap = channel.metrics.snapshot()
    assert snap.messages_received == senders * per_sender
    assert snap.errors == 0
    assert snap.queue_length == 0


def test_a_handler_that_raises_is_logged_and_counted_and_the_next_message_is_handled(
    qtbot: Any, channel: DccIpcChannel, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[int] = []

    def on_message(msg: IpcMessage) -> None:
        if msg.data["n"] == 1:
            raise ValueError("bad scene")
        handled.append(msg.data["n"])

    channel.on_message(on_message)
    with caplog.at_level(logging.ERROR, logger="aurora_dcc.channel.base"):
        start_thread(lambda: [channel.emit("n", {"n": n}) for n in (1, 2, 3)])
        qtbot.waitUntil(lambda: handled == [2, 3], timeout=5000)
    assert channel.metrics.snapshot().errors == 1
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "bad scene" in caplog.text


def test_without_a_handler_messages_wait_for_receive_then_go_to_a_new_handler(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    in_thread(qtbot, lambda: [channel.emit("n", {"n": n}) for n in range(5)])
    qtbot.wait(20)  # nothing to wait for: the loop runs the wake, which must take nothing
    assert channel.try_receive().data == {"n": 0}  # type: ignore[union-attr]
    assert channel.receive(timeout=1.0).data == {"n": 1}
    got: list[int] = []
    channel.on_message(lambda msg: got.append(msg.data["n"]))
    qtbot.waitUntil(lambda: got == [2, 3, 4], timeout=5000)
    assert channel.try_receive() is None


def test_a_nested_event_loop_in_a_handler_keeps_delivery_in_order(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    count = 2000
    got: list[int] = []
    fifth = threading.Event()

    def on_message(msg: IpcMessage) -> None:
        got.append(msg.data["n"])
        if msg.data["n"] == 5:
            fifth.set()
        if msg.data["n"] == 0:  # like a modal dialog: the main thread waits inside a handler
            assert channel.wait_event(fifth, timeout=5.0)

    channel.on_message(on_message)
    for n in range(count):  # sent from the main thread itself: delivered later, in its loop
        channel.emit("n", {"n": n})
    qtbot.waitUntil(lambda: len(got) == count, timeout=10_000)
    assert got == list(range(count))


def test_call_in_main_thread_returns_the_result_to_the_worker(
    qtbot: Any, qapp: Any, channel: DccIpcChannel
) -> None:
    def double_where(x: int) -> tuple[int, bool]:
        return x * 2, QtCore.QThread.currentThread() == qapp.thread()

    result = in_thread(qtbot, lambda: channel.call_in_main_thread(double_where, 21, timeout=5.0))
    assert result == (42, True)


def test_call_in_main_thread_reraises_the_exception_in_the_worker(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    def fail() -> None:
        raise KeyError("no such node")

    with pytest.raises(KeyError, match="no such node"):
        in_thread(qtbot, lambda: channel.call_in_main_thread(fail, timeout=5.0))


def test_call_in_main_thread_runs_inline_on_the_main_thread(channel: DccIpcChannel) -> None:
    # No event loop runs here: a queued call would time out instead.
    assert channel.call_in_main_thread(lambda a, b: a + b, 2, 3, timeout=0.5) == 5


def test_post_runs_on_the_main_thread_in_order_without_waiting(
    qtbot: Any, qapp: Any, channel: DccIpcChannel, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[tuple[int, bool]] = []

    def note(i: int) -> None:
        ran.append((i, channel.on_main_thread()))
        if i == 1:
            raise ValueError("a posted call that fails")  # logged; the next still runs

    in_thread(qtbot, lambda: [channel.post(note, i) for i in range(3)])
    qtbot.waitUntil(lambda: len(ran) == 3)
    assert ran == [(0, True), (1, True), (2, True)]
    assert "a posted call that fails" in caplog.text
    channel.shutdown()
    with pytest.raises(ShuttingDown):
        channel.post(note, 3)


def test_post_is_bounded_by_the_channel_capacity(qapp: Any) -> None:
    waker = ManualWaker()  # nothing runs the main thread's calls until the test does
    bounded = DccIpcChannel("bounded", capacity=2, waker=waker, send_timeout=0.2)
    try:
        bounded.post(lambda: None)
        bounded.post(lambda: None)
        with pytest.raises(SendFailed):  # the main thread itself: at once
            bounded.post(lambda: None)
        errors: list[BaseException] = []

        def from_worker() -> None:
            try:
                bounded.post(lambda: None)
            except SendFailed as exc:
                errors.append(exc)

        worker = start_thread(from_worker)
        worker.join(5.0)
        assert len(errors) == 1  # a worker waited send_timeout for room
        waker.callback()  # the main thread runs what was posted: room again
        bounded.post(lambda: None)
    finally:
        bounded.shutdown()


def test_call_in_main_thread_passes_keyword_arguments_and_keeps_its_timeout(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    def where(a: int, *, timeout: int = 0, b: int = 0) -> tuple[int, int, int, bool]:
        return a, b, timeout, channel.on_main_thread()

    assert in_thread(qtbot, lambda: channel.call_in_main_thread(where, 1, b=2, timeout=5.0)) == (
        1,
        2,
        0,  # timeout= is the call's own, not the function's
        True,
    )


def test_calls_from_many_workers_all_return(qtbot: Any, channel: DccIpcChannel) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(200):
            value = channel.call_in_main_thread(lambda v: v, k * 1000 + i, timeout=10.0)
            with lock:
                results.append(value)

    threads = [start_thread(lambda k=k: worker(k)) for k in range(4)]
    qtbot.waitUntil(lambda: not any(t.is_alive() for t in threads), timeout=30_000)
    assert sorted(results) == sorted(k * 1000 + i for k in range(4) for i in range(200))


def test_call_in_main_thread_times_out_and_the_call_is_then_dropped(qapp: Any) -> None:
    waker = ManualWaker()
    channel = DccIpcChannel("manual", waker=waker)
    ran: list[bool] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            channel.call_in_main_thread(lambda: ran.append(True), timeout=0.1)
        except BaseException as exc:
            errors.append(exc)

    thread = start_thread(worker)
    thread.join(5.0)
    assert [type(e) for e in errors] == [ChannelTimeout]
    waker.callback()  # the main thread comes round at last
    assert ran == []
    channel.shutdown()


def test_a_call_that_finishes_after_its_timeout_does_not_answer_the_next_call(
    qapp: Any,
) -> None:
    # A worker waits on one reusable lock per thread: a call that ran late must
    # not release the worker's next call early (with no result).
    waker = ManualWaker()
    channel = DccIpcChannel("manual", waker=waker)
    gave_up, first_ran = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def worker() -> None:
        try:
            channel.call_in_main_thread(lambda: gave_up.wait(5.0) and "late", timeout=0.2)
        except ChannelTimeout:
            gave_up.set()
        assert first_ran.wait(5.0)
        waker.woken.clear()
        outcome.append(channel.call_in_main_thread(lambda: "second", timeout=5.0))

    thread = start_thread(worker)
    assert waker.woken.wait(5.0)
    waker.callback()  # runs the first call, which outlives the worker's timeout
    first_ran.set()
    assert waker.woken.wait(5.0)  # the second call is queued
    thread.join(0.5)  # had the late release reached it, it would have returned by now
    assert thread.is_alive() and outcome == []
    waker.callback()
    thread.join(5.0)
    assert outcome == ["second"]
    channel.shutdown()


def test_a_worker_waiting_in_call_in_main_thread_gets_shutting_down(qapp: Any) -> None:
    waker = ManualWaker()  # never runs the call: the main thread is "busy"
    channel = DccIpcChannel("manual", waker=waker)
    waker.woken.clear()
    outcome: list[Any] = []

    def worker() -> None:
        try:
            outcome.append(channel.call_in_main_thread(lambda: "ran", timeout=30.0))
        except ShuttingDown as exc:
            outcome.append(exc)

    thread = start_thread(worker)
    assert waker.woken.wait(5.0)  # the call is queued and the main thread asked for
    channel.shutdown()
    thread.join(5.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ShuttingDown)
    assert waker.closed
    with pytest.raises(ShuttingDown):
        channel.call_in_main_thread(lambda: None)
    with pytest.raises(ShuttingDown):
        channel.emit("late")


def test_a_waker_without_qt_delivers_on_its_main_thread(qapp: Any) -> None:
    waker = ManualWaker()
    channel = DccIpcChannel("manual", waker=waker)
    got: list[tuple[int, bool]] = []
    channel.on_message(lambda msg: got.append((msg.data["n"], waker.on_main_thread())))
    waker.callback()  # the drain asked for by attach() and on_message(): nothing queued yet
    wakes_before = waker.wakes
    start_thread(lambda: [channel.emit("n", {"n": n}) for n in range(100)]).join(5.0)
    assert waker.wakes - wakes_before == 1  # coalesced: one wake for a burst into an empty queue
    waker.callback()
    assert got == [(n, True) for n in range(100)]
    wakes_before = waker.wakes
    start_thread(lambda: [channel.emit("n", {"n": n}) for n in range(100, 200)]).join(5.0)
    assert waker.wakes - wakes_before == 1  # the drain emptied the queue: the next burst wakes it
    waker.callback()
    assert got == [(n, True) for n in range(200)]
    channel.shutdown()


def test_wait_event_on_the_main_thread_keeps_delivering(qtbot: Any, channel: DccIpcChannel) -> None:
    reply = threading.Event()
    channel.on_message(lambda msg: reply.set())
    start_thread(lambda: channel.emit("reply"))
    assert channel.wait_event(reply, timeout=5.0)  # a plain wait here would deadlock
    assert not channel.wait_event(threading.Event(), timeout=0.05)


def test_shutdown_on_the_main_thread_delivers_what_is_queued(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    got: list[int] = []
    channel.on_message(lambda msg: got.append(msg.data["n"]))
    for n in range(50):  # queued; the loop has not run yet
        channel.emit("n", {"n": n})
    channel.shutdown()
    assert got == list(range(50))
    qtbot.wait(10)  # the wake still posted for this channel finds it closed: no error
    assert channel.is_shutdown()


def cpus_busy_elsewhere(sample: float = 0.3) -> Optional[float]:
    """CPUs other processes keep busy, sampled while this one waits (Linux; None elsewhere)."""

    def busy_and_total() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # minus idle and iowait

    try:
        busy, total = busy_and_total()
        time.sleep(sample)  # this process idles so that what is busy is someone else
        busy_after, total_after = busy_and_total()
    except (OSError, ValueError, IndexError):
        return None
    return (busy_after - busy) / max(1, total_after - total) * (os.cpu_count() or 1)


def flood_under_a_5ms_timer(
    channel: DccIpcChannel, count: int, work: float = 5e-6
) -> tuple[float, float, float]:
    """Flood ``channel`` with ``count`` messages while a 5 ms QTimer ticks on the main thread.

    Each message costs its handler ``work`` seconds, so the queue backs up and
    every drain runs into the frame budget.

    Returns the timer's lateness (wall clock, ms): the worst and the 90th
    percentile, and the most main-thread CPU time spent between two ticks (ms):
    the part the frame budget controls.
    """
    # A real event loop: qtbot.waitUntil sleeps up to 10 ms between its passes.
    loop = QtCore.QEventLoop()
    seen = [0]

    def on_message(msg: IpcMessage) -> None:
        busy_until = time.perf_counter() + work
        while time.perf_counter() < busy_until:
            pass
        seen[0] += 1
        if seen[0] == count:
            loop.quit()

    unsubscribe = channel.on_message(on_message)
    ticks: list[tuple[float, float]] = []
    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.PreciseTimer)
    timer.timeout.connect(lambda: ticks.append((time.perf_counter(), time.thread_time())))

    def flood() -> None:
        emit = channel.emit
        for i in range(count):
            emit("tick", {"i": i})

    safety_net = QtCore.QTimer()
    safety_net.setSingleShot(True)
    safety_net.timeout.connect(loop.quit)
    safety_net.start(60_000)
    timer.start(5)
    start_thread(flood)
    loop.exec()
    timer.stop()
    safety_net.stop()
    unsubscribe()
    assert seen[0] == count
    assert len(ticks) > 5, "the flood ended before the timer could be observed"
    pairs = list(zip(ticks, ticks[1:]))
    late = sorted(b[0] - a[0] - 0.005 for a, b in pairs)
    cpu_ms = max(b[1] - a[1] for a, b in pairs) * 1000.0
    return late[-1] * 1000.0, late[len(late) * 9 // 10] * 1000.0, cpu_ms


def test_frame_budget_keeps_a_5ms_timer_on_time_during_a_100000_message_flood(
    channel: DccIpcChannel,
) -> None:
    # What the budget controls is asserted in every flood: main-thread CPU time
    # between two ticks. A drain that does not yield fails it: resumed by posted
    # events, the glib dispatcher ran timers ~20 times a second, ~50 ms of CPU
    # apart; with no budget the flood ends between two ticks.
    # The worst wall-clock lateness must be within 20 ms in one of up to three
    # floods. Two things outside the channel can stall the main thread longer
    # and are kept out of the measure: a full GC of the test process's own heap
    # (pytest, Qt, every test module: 30-60 ms, run by whichever thread trips
    # it), hence the freeze below (the flood's own objects are still collected);
    # and other processes keeping the CPUs busy (a descheduled thread holding
    # the GIL stalls both): if more than half a CPU was busy elsewhere before or
    # after the floods, the test says so instead of failing.
    busy_before = cpus_busy_elsewhere()
    floods: list[tuple[float, float, float]] = []
    gc.collect()
    gc.freeze()
    try:
        for _ in range(3):
            floods.append(flood_under_a_5ms_timer(channel, 100_000))
            if floods[-1][0] <= 20.0:
                break
    finally:
        gc.unfreeze()
    report = f"(worst late ms, p90 late ms, cpu ms between ticks) per flood: {floods}"
    assert all(cpu_ms <= 20.0 for _, _, cpu_ms in floods), report
    if min(worst_ms for worst_ms, _, _ in floods) > 20.0:
        busy = [b for b in (busy_before, cpus_busy_elsewhere()) if b is not None]
        if busy and max(busy) > 0.5:
            pytest.skip(f"{max(busy):.1f} CPUs busy elsewhere: too busy to time 20 ms; {report}")
        pytest.fail(f"{report}; CPUs busy elsewhere: {busy}")


def test_attaching_twice_is_refused(qapp: Any) -> None:
    channel = DccIpcChannel("manual", waker=ManualWaker())
    assert channel.is_attached
    with pytest.raises(RuntimeError, match="already attached"):
        channel.attach(ManualWaker())
    channel.shutdown()


def test_shutdown_from_a_worker_lets_the_main_thread_deliver_what_is_queued(
    qtbot: Any, channel: DccIpcChannel
) -> None:
    got: list[int] = []
    channel.on_message(lambda msg: got.append(msg.data["n"]))

    def send_then_shut_down() -> None:
        for n in range(1000):
            channel.emit("n", {"n": n})
        channel.shutdown()

    in_thread(qtbot, send_then_shut_down)
    qtbot.waitUntil(lambda: got == list(range(1000)), timeout=5000)
    with pytest.raises(ShuttingDown):
        channel.emit("late")


@pytest.mark.subprocess
def test_the_channel_modules_import_no_qt() -> None:
    # A host without Qt (Blender) uses DccIpcChannel with its own Waker.
    code = (
        "import sys, aurora_dcc.main_thread.channel, aurora_dcc.channel.waker; "
        "print(sorted(m for m in sys.modules if m.startswith(('qtpy', 'PySide', 'PyQt'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_channel_attached_on_a_worker_thread_still_runs_everything_on_the_main_thread(
    qtbot: Any, qapp: Any
) -> None:
    made: list[DccIpcChannel] = []
    start_thread(lambda: made.append(DccIpcChannel("from-worker"))).join(5.0)
    (channel,) = made  # its QtWaker was bound off the main thread
    main = qapp.thread()
    handled: list[bool] = []
    channel.on_message(lambda msg: handled.append(QtCore.QThread.currentThread() == main))
    start_thread(lambda: channel.emit("tick")).join(5.0)
    qtbot.waitUntil(lambda: bool(handled), timeout=5000)
    called: list[bool] = []
    on_main = lambda: QtCore.QThread.currentThread() == main  # noqa: E731
    start_thread(lambda: called.append(channel.call_in_main_thread(on_main, timeout=5.0)))
    qtbot.waitUntil(lambda: bool(called), timeout=5000)
    assert handled == [True] and called == [True]
    channel.shutdown()
