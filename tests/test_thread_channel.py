"""ThreadChannel: ordering, no loss, timeouts, a full queue, shutdown while blocked."""

from __future__ import annotations

import json
import threading
import time

import pytest
from support import ThreadRunner

from aurora_dcc import (
    ChannelTimeout,
    IpcChannel,
    IpcMessage,
    ShuttingDown,
    ThreadChannel,
)
from aurora_dcc.errors import SendFailed


def test_pair_ends_are_named_and_connected() -> None:
    a, b = ThreadChannel.pair("jobs")
    assert (a.name, b.name) == ("jobs_a", "jobs_b")
    a.send(IpcMessage.request("scene.info"))
    b.emit("done", {"ok": True})
    assert b.receive(timeout=1).method == "scene.info"
    assert a.receive(timeout=1).data == {"ok": True}
    assert a.try_receive() is None and b.try_receive() is None


def test_single_channel_is_a_loopback_queue() -> None:
    channel = ThreadChannel("loop")
    channel.send_json({"n": 1})
    msg = channel.receive(timeout=1)
    assert msg.type == "data" and msg.data == {"n": 1}


def test_100k_messages_across_threads_arrive_in_order_without_loss(
    run_in_thread: ThreadRunner,
) -> None:
    a, b = ThreadChannel.pair("bulk", capacity=1000)
    count = 100_000

    def produce() -> None:
        for i in range(count):
            a.send(IpcMessage("data", i))

    producer = run_in_thread.start(produce)
    received = [b.receive(timeout=10).data for _ in range(count)]
    producer.result(10)
    assert received == list(range(count))
    assert b.try_receive() is None
    snap = b.metrics.snapshot()
    assert snap.messages_received == count
    assert a.metrics.snapshot().messages_sent == count
    assert 1 <= snap.peak_queue_length <= 1000


def test_receive_times_out_with_channel_timeout_which_is_a_timeout_error() -> None:
    channel = ThreadChannel("idle")
    started = time.monotonic()
    with pytest.raises(ChannelTimeout) as info:
        channel.receive(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert 0.04 <= time.monotonic() - started < 2


def test_full_queue_waits_for_room_then_raises_send_failed(run_in_thread: ThreadRunner) -> None:
    a, b = ThreadChannel.pair("tight", capacity=2)
    a.send(IpcMessage("data", 1))
    a.send(IpcMessage("data", 2))
    with pytest.raises(SendFailed, match="queue full"):
        a.send(IpcMessage("data", 3), timeout=0.05)
    # Nothing was dropped: the two queued messages are intact.
    assert [b.receive(timeout=1).data for _ in range(2)] == [1, 2]
    # And a blocked sender proceeds as soon as there is room.
    a.send(IpcMessage("data", 4))
    a.send(IpcMessage("data", 5))
    sender = run_in_thread.start(lambda: a.send(IpcMessage("data", 6), timeout=5))
    assert b.receive(timeout=1).data == 4
    sender.result(5)
    assert [b.receive(timeout=1).data for _ in range(2)] == [5, 6]


def test_default_send_timeout_comes_from_the_channel() -> None:
    a, _b = ThreadChannel.pair("tight", capacity=1, send_timeout=0.05)
    a.send(IpcMessage("data", 1))
    with pytest.raises(SendFailed):
        a.send(IpcMessage("data", 2))


def test_shutdown_wakes_a_blocked_sender_and_a_waiting_receiver_promptly(
    run_in_thread: ThreadRunner,
) -> None:
    a, _b = ThreadChannel.pair("stop", capacity=1, send_timeout=None)
    a.send(IpcMessage("data", 1))  # b's queue is now full
    idle = ThreadChannel("idle", send_timeout=None)
    sender = run_in_thread.start(lambda: a.send(IpcMessage("data", 2)))
    receiver = run_in_thread.start(lambda: idle.receive())
    # Wait until both are really blocked: the queues count their waiters.
    deadline = time.monotonic() + 5
    while not (a._outbox._room_waiters and idle._inbox._item_waiters):
        assert time.monotonic() < deadline, "the threads never blocked"
        time.sleep(0.001)
    assert not sender.done() and not receiver.done()
    started = time.monotonic()
    a.shutdown()
    idle.shutdown()
    assert isinstance(sender.exception(2), ShuttingDown)
    assert isinstance(receiver.exception(2), ShuttingDown)
    assert time.monotonic() - started < 1


def test_shutdown_is_shared_by_a_pair_and_keeps_queued_messages() -> None:
    a, b = ThreadChannel.pair("p")
    a.send(IpcMessage("data", "queued before shutdown"))
    b.shutdown()
    assert a.is_shutdown() and b.is_shutdown()
    with pytest.raises(ShuttingDown):
        a.send(IpcMessage("data", "late"))
    assert b.receive(timeout=1).data == "queued before shutdown"
    with pytest.raises(ShuttingDown):
        b.receive(timeout=1)
    assert b.try_receive() is None


def test_wait_for_drain_waits_for_in_flight_guards_and_consumption(
    run_in_thread: ThreadRunner,
) -> None:
    a, b = ThreadChannel.pair("drain")
    guard = a.shutdown_state.begin_operation()
    with pytest.raises(ChannelTimeout):
        a.wait_for_drain(timeout=0.05)
    guard.release()
    a.send(IpcMessage("data", 1))
    with pytest.raises(ChannelTimeout, match="still queued"):
        a.wait_for_drain(timeout=0.05)
    consumer = run_in_thread.start(lambda: b.receive(timeout=5))
    a.wait_for_drain(timeout=5)
    consumer.result(5)
    assert b.try_receive() is None


def test_on_message_handlers_run_and_survive_a_raising_handler() -> None:
    a, b = ThreadChannel.pair("handlers")
    seen: list[object] = []
    done = threading.Event()

    def broken(msg: IpcMessage) -> None:
        raise RuntimeError("handler bug")

    def record(msg: IpcMessage) -> None:
        seen.append(msg.data)
        if len(seen) == 3:
            done.set()

    b.on_message(broken)
    b.on_message(record)
    for i in range(3):
        a.send(IpcMessage("data", i))
    assert done.wait(5)
    assert seen == [0, 1, 2]
    assert b.metrics.snapshot().errors == 3
    a.shutdown()


def test_unsubscribed_handler_is_not_called() -> None:
    channel = ThreadChannel("unsub")
    calls: list[IpcMessage] = []
    got = threading.Event()
    unsubscribe = channel.on_message(calls.append)
    unsubscribe()
    channel.on_message(lambda msg: got.set())
    channel.emit("e")
    assert got.wait(5)
    assert calls == []
    channel.shutdown()


def test_context_manager_shuts_down() -> None:
    with ThreadChannel("ctx") as channel:
        assert isinstance(channel, IpcChannel)
        assert not channel.is_shutdown()
    assert channel.is_shutdown()


def test_metrics_snapshot_is_frozen_and_json_serialisable() -> None:
    a, b = ThreadChannel.pair("m")
    a.emit("e", {"x": 1})
    b.receive(timeout=1)
    snap = b.metrics.snapshot()
    assert snap.messages_received == 1 and snap.max_latency_ms >= snap.avg_latency_ms > 0
    assert json.loads(json.dumps(snap.to_dict()))["messages_received"] == 1
    with pytest.raises(AttributeError):
        snap.errors = 5  # type: ignore[misc]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ThreadChannel("bad", capacity=0)


def test_metrics_count_exactly_through_single_and_batched_takes() -> None:
    a, b = ThreadChannel.pair("counts", capacity=5000)
    for i in range(3000):
        a.send(IpcMessage("data", i))
    taken = [b.receive(timeout=1).data for _ in range(700)]
    taken += [m.data for m in b.try_receive_many(1500)]
    sent_snap, received_snap = a.metrics.snapshot(), b.metrics.snapshot()
    assert sent_snap.messages_sent == 3000
    assert received_snap.messages_received == 2200
    assert received_snap.queue_length == 800
    while (msg := b.try_receive()) is not None:
        taken.append(msg.data)
    assert taken == list(range(3000))
    assert b.metrics.snapshot().messages_received == 3000


def test_peak_queue_length_is_the_longest_the_queue_has_been() -> None:
    a, b = ThreadChannel.pair("peak", capacity=100)
    for _ in range(7):
        a.send(IpcMessage("data"))
    for _ in range(3):
        b.receive(timeout=1)
    a.send(IpcMessage("data"))  # 5 queued: below the peak
    assert b.metrics.snapshot().peak_queue_length == 7
    for _ in range(6):
        a.send(IpcMessage("data"))  # 11 queued
    b.try_receive_many(100)
    assert b.metrics.snapshot().peak_queue_length == 11
    for _ in range(100):
        a.send(IpcMessage("data"))
    with pytest.raises(SendFailed):
        a.send(IpcMessage("data"), timeout=0.01)
    assert b.metrics.snapshot().peak_queue_length == 100


def test_latency_is_sampled_from_the_first_message_on_and_under_backlog() -> None:
    from aurora_dcc.channel.thread import LATENCY_SAMPLE

    a, b = ThreadChannel.pair("latency", capacity=10 * LATENCY_SAMPLE)
    a.send(IpcMessage("data"))
    time.sleep(0.02)
    b.receive(timeout=1)
    first = b.metrics.snapshot()
    assert first.avg_latency_ms >= 15  # the first message is always measured
    # A backlog that waits 20 ms before it is drained: a sample is armed every
    # LATENCY_SAMPLE takes and measures the next message sent, which waits too.
    for _ in range(3):
        for _ in range(2 * LATENCY_SAMPLE):
            a.send(IpcMessage("data"))
        time.sleep(0.02)
        while b.try_receive_many(50):
            pass
    snap = b.metrics.snapshot()
    assert snap.messages_received == 1 + 6 * LATENCY_SAMPLE
    assert b.metrics.latency_count >= 3
    assert snap.avg_latency_ms >= 15 and snap.max_latency_ms >= snap.avg_latency_ms


def test_many_senders_and_receivers_through_a_small_queue_lose_nothing(
    run_in_thread: ThreadRunner,
) -> None:
    """Senders often find the queue full, receivers often find it empty: every
    wake-up between them must arrive. A lost one leaves a thread waiting until
    its timeout (10 s) although messages or room came meanwhile."""
    senders, per_sender, capacity = 4, 5000, 8
    a, b = ThreadChannel.pair("busy", capacity=capacity, send_timeout=10)
    received: list[list[tuple[int, int]]] = [[], []]
    longest_wait = [0.0]

    def waited(started: float) -> None:
        longest_wait[0] = max(longest_wait[0], time.monotonic() - started)

    def send(sender: int) -> None:
        for i in range(per_sender):
            started = time.monotonic()
            a.send(IpcMessage("data", (sender, i)))
            waited(started)

    def receive(mine: list[tuple[int, int]], batch: int) -> None:
        # One blocking receive, then up to ``batch - 1`` more without waiting.
        while True:
            started = time.monotonic()
            first = b.receive(timeout=10)
            waited(started)
            msgs = [first, *b.try_receive_many(batch - 1)]
            byes = [msg for msg in msgs if msg.type == "bye"]
            mine.extend(tuple(msg.data) for msg in msgs if msg.type != "bye")
            if byes:
                for extra in byes[1:]:  # the other receiver's: pass it on
                    a.send(extra)
                return

    workers = [run_in_thread.start(send, s) for s in range(senders)]
    receivers = [
        run_in_thread.start(receive, received[0], 1),
        run_in_thread.start(receive, received[1], 16),
    ]
    for worker in workers:
        worker.result(30)
    a.send(IpcMessage("bye"))
    a.send(IpcMessage("bye"))
    for receiver in receivers:
        receiver.result(30)
    everything = received[0] + received[1]
    assert len(everything) == senders * per_sender
    assert longest_wait[0] < 5.0  # messages and room kept coming: nobody waits that long
    for sender in range(senders):
        for part in received:  # each receiver sees each sender's messages in order
            mine = [i for s, i in part if s == sender]
            assert mine == sorted(mine)
        assert sorted(i for s, i in everything if s == sender) == list(range(per_sender))
    sent = a.metrics.snapshot().messages_sent
    assert sent - b.metrics.snapshot().messages_received == 0
    assert senders * per_sender + 2 <= sent <= senders * per_sender + 4  # byes passed on
    assert capacity <= b.metrics.snapshot().peak_queue_length <= capacity + senders


def test_wait_for_drain_returns_once_a_receiver_on_another_thread_took_everything(
    run_in_thread: ThreadRunner,
) -> None:
    a, b = ThreadChannel.pair("drain")
    for i in range(5000):
        a.send(IpcMessage("data", i))
    taker = run_in_thread.start(lambda: [b.receive(timeout=5) for _ in range(5000)])
    a.wait_for_drain(timeout=10)
    assert len(b._inbox) == 0
    taker.result(10)


def test_the_wake_up_callback_comes_once_after_the_receiver_asks_for_it(
    run_in_thread: ThreadRunner,
) -> None:
    a, b = ThreadChannel.pair("wake")
    wakes: list[int] = []
    b.set_wakeup(lambda: wakes.append(len(wakes)))
    a.send(IpcMessage("data", 1))
    assert wakes == []  # nobody asked
    assert not b.wake_on_next_send()  # a message waits: take it first
    assert b.receive(timeout=1).data == 1
    assert b.wake_on_next_send()
    run_in_thread(lambda: [a.send(IpcMessage("data", n)) for n in range(3)], timeout=5)
    assert wakes == [0]  # one wake-up for the burst
    assert [m.data for m in b.try_receive_many(10)] == [0, 1, 2]
