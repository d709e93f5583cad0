"""ProcessPlugin with real child processes, with and without a Qt main thread."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aurora_dcc.process.plugin import PluginCancelled, ProcessPlugin, ProcessPluginError

pytestmark = pytest.mark.subprocess

CHILDREN = Path(__file__).parent / "children"
STEPS = str(CHILDREN / "plugin_steps.py")


class Recorder:
    """Collects (event, data, thread) and signals when an event named ``until`` arrives."""

    def __init__(self, until: str = "plugin.finished") -> None:
        self.events: list[tuple[str, Any, threading.Thread]] = []
        self.until = until
        self.arrived = threading.Event()

    def __call__(self, event: str, data: Any) -> None:
        self.events.append((event, data, threading.current_thread()))
        if event == self.until:
            self.arrived.set()

    def names(self) -> list[str]:
        return [event for event, _, _ in self.events]


def test_progress_result_and_finished_in_order_without_qt() -> None:
    recorder = Recorder()
    progress: list[Any] = []
    plugin = ProcessPlugin(STEPS, ["20"], on_progress=progress.append, main_thread=False)
    plugin.on("*", recorder)
    assert plugin.start().result(timeout=30.0) == {"steps": 20, "args": ["20"]}
    assert recorder.arrived.wait(10.0)
    assert [data["done"] for data in progress] == list(range(1, 21))
    assert progress[-1] == {"done": 20, "total": 20, "message": "step 20"}
    assert recorder.names() == ["progress"] * 20 + ["plugin.finished"]
    assert recorder.events[-1][1] == {"returncode": 0}
    plugin.cancel()  # too late to cancel: the result stands
    assert plugin.result(timeout=1.0) == {"steps": 20, "args": ["20"]}


def test_events_arrive_on_the_qt_main_thread(qtbot: Any) -> None:
    recorder = Recorder()
    plugin = ProcessPlugin(STEPS, ["50"])  # a QApplication exists: main thread by default
    plugin.on("*", recorder)
    plugin.start()
    qtbot.waitUntil(recorder.arrived.is_set, timeout=30_000)
    assert recorder.names() == ["progress"] * 50 + ["plugin.finished"]
    assert {thread for _, _, thread in recorder.events} == {threading.main_thread()}
    assert plugin.result(timeout=5.0) == {"steps": 50, "args": ["50"]}


def test_a_failing_plugin_reports_exit_code_and_stderr_tail() -> None:
    plugin = ProcessPlugin(STEPS, ["3", "fail"], main_thread=False).start()
    with pytest.raises(ProcessPluginError) as info:
        plugin.result(timeout=30.0)
    assert not isinstance(info.value, PluginCancelled)
    assert info.value.returncode == 1
    assert "RuntimeError: bake failed at step 3" in info.value.stderr_tail
    assert "exit code 1" in str(info.value)


def test_a_script_that_never_connects_still_reports_its_failure() -> None:
    plugin = ProcessPlugin(str(CHILDREN / "backend_exit_early.py"), main_thread=False).start()
    with pytest.raises(ProcessPluginError) as info:
        plugin.result(timeout=30.0)
    assert info.value.returncode == 7
    assert "config file missing" in info.value.stderr_tail


def test_cancel_is_heard_by_the_child() -> None:
    recorder = Recorder(until="cancel.heard")
    first_progress = threading.Event()
    plugin = ProcessPlugin(
        STEPS,
        ["1", "wait-for-cancel"],
        on_progress=lambda _: first_progress.set(),
        main_thread=False,
    )
    plugin.on("cancel.heard", recorder)
    plugin.start()
    assert first_progress.wait(30.0)
    plugin.cancel(grace=20.0)
    with pytest.raises(PluginCancelled) as info:
        plugin.result(timeout=30.0)
    assert recorder.arrived.is_set()
    assert info.value.returncode == 0  # it stopped by itself, well within the grace period


def test_cancel_terminates_a_child_that_ignores_it() -> None:
    first_progress = threading.Event()
    plugin = ProcessPlugin(
        STEPS, ["1", "ignore-cancel"], on_progress=lambda _: first_progress.set(), main_thread=False
    ).start()
    assert first_progress.wait(30.0)
    started = time.monotonic()
    plugin.cancel(grace=0.5)
    with pytest.raises(PluginCancelled) as info:
        plugin.result(timeout=30.0)
    assert time.monotonic() - started < 10.0
    assert info.value.returncode == -signal.SIGTERM


def test_a_module_runs_with_python_dash_m() -> None:
    plugin = ProcessPlugin("plugin_steps", ["2"], module=True, cwd=str(CHILDREN), main_thread=False)
    with plugin:
        assert plugin.result(timeout=30.0) == {"steps": 2, "args": ["2"]}
