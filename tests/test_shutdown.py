"""ShutdownState: guards, refusal after shutdown, drain, shared coordination."""

from __future__ import annotations

import threading

import pytest
from support import ThreadRunner

from aurora_dcc import ChannelTimeout, ShuttingDown, ThreadChannel
from aurora_dcc.channel.shutdown import ShutdownState


def test_guards_count_in_flight_operations() -> None:
    state = ShutdownState()
    with state.begin_operation():
        assert state.in_flight == 1
        with state.begin_operation():
            assert state.in_flight == 2
    assert state.in_flight == 0


def test_release_is_idempotent() -> None:
    state = ShutdownState()
    guard = state.begin_operation()
    guard.release()
    guard.release()
    assert state.in_flight == 0


def test_shutdown_refuses_new_operations() -> None:
    state = ShutdownState()
    state.shutdown()
    state.shutdown()  # idempotent
    assert state.is_shutdown()
    with pytest.raises(ShuttingDown):
        state.begin_operation()


def test_wait_for_drain_returns_when_the_last_guard_ends() -> None:
    state = ShutdownState()
    guard = state.begin_operation()
    state.shutdown()
    releaser = threading.Timer(0.05, guard.release)
    releaser.start()
    state.wait_for_drain(timeout=5)
    assert state.in_flight == 0
    releaser.join()


def test_wait_for_drain_times_out_with_the_count() -> None:
    state = ShutdownState()
    state.begin_operation()
    with pytest.raises(ChannelTimeout, match="1 operation"):
        state.wait_for_drain(timeout=0.02)


def test_callbacks_run_once_and_late_ones_run_at_once() -> None:
    state = ShutdownState()
    calls: list[str] = []
    state.on_shutdown(lambda: calls.append("early"))
    state.on_shutdown(lambda: 1 / 0)  # a failing callback does not stop the rest
    state.on_shutdown(lambda: calls.append("second"))
    state.shutdown()
    state.shutdown()
    state.on_shutdown(lambda: calls.append("late"))
    assert calls == ["early", "second", "late"]


def test_one_state_shuts_down_several_channels(run_in_thread: ThreadRunner) -> None:
    state = ShutdownState()
    jobs = ThreadChannel("jobs", shutdown_state=state, send_timeout=None)
    events = ThreadChannel("events", shutdown_state=state, send_timeout=None)
    waiters = [run_in_thread.start(channel.receive) for channel in (jobs, events)]
    jobs.shutdown()
    assert [type(waiter.exception(2)) for waiter in waiters] == [ShuttingDown, ShuttingDown]
    assert events.is_shutdown()
