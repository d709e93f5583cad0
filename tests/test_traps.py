"""The traps a new user hits on day one (issue 14), each closed.

- ``create_for_context()`` in a process that hosts returns an in-process
  channel to that host (never a socket to itself, which froze the main thread
  until a ``ChannelTimeout``): requests run on the main thread, from the main
  thread itself and from other threads.
- ``start_host()`` asked for other settings than the running host's raises,
  naming them; the same settings return the running host.
- ``call_in_main_thread(fn, *args, **kwargs)``.
- Events a main-thread handler emits while it runs reach clients as they are
  emitted, not when it returns.

Real Qt event loop (pytest-qt), real sockets; the Blender host with the real
``bpy`` module in a child process (tests/children/blender_traps.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qt_helpers import in_thread, unique_name
from support import unique_channel_name

from aurora_dcc import create_for_context
from aurora_dcc.errors import ErrorCode
from aurora_dcc.hosts.host_settings import HostSettingsError
from aurora_dcc.hosts.qt_host import QtHost, current_host, start_host, stop_host
from aurora_dcc.main_thread.in_process import InProcessChannel
from aurora_dcc.process.environment import ENV_CHANNEL, ENV_TOKEN
from aurora_dcc.qt import socket_writer
from aurora_dcc.qt.compat import on_qt_main_thread
from aurora_dcc.rpc.peer import IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel

CHILDREN = Path(__file__).resolve().parent / "children"
PROGRESS_STEPS = 5
PROGRESS_GAP = 0.2
PROGRESS_LAG = 0.05
"""How late an event may reach the client after its emit (the issue's bound)."""


@pytest.fixture
def host(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[QtHost]:
    """The process's host (``start_host``) on this test's Qt loop; environment restored."""
    for var in (ENV_CHANNEL, ENV_TOKEN):  # set then deleted: undone even when the host sets it
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    assert current_host() is None
    running = start_host(unique_name(), peer_name="traps")
    running.register("test.on_main", on_qt_main_thread)
    yield running
    stop_host()


# -- create_for_context() where a host runs ------------------------------------------


def test_create_for_context_in_a_hosting_process_serves_on_the_main_thread(
    host: QtHost, qtbot: Any
) -> None:
    channel = create_for_context()
    assert isinstance(channel, InProcessChannel)
    peer = Peer(channel, timeout=5.0)
    try:
        started = time.monotonic()
        assert peer.request("test.on_main") is True  # the main thread asks: run at once
        assert time.monotonic() - started < 1.0  # no socket to ourselves, no freeze
        assert "test.on_main" in peer.remote_handler_names
        # Another thread of the DCC: posted to the main thread, which keeps its loop running.
        assert in_thread(qtbot, lambda: peer.request("test.on_main")) is True
        with pytest.raises(IpcCallError) as info:
            peer.request("test.nothing")
        assert info.value.code == ErrorCode.METHOD_NOT_FOUND
        assert host.server.connections == []  # never a socket
    finally:
        peer.close()
        channel.close()


def test_the_in_process_client_hears_the_host_and_the_host_hears_it(host: QtHost) -> None:
    channel = create_for_context()
    peer = Peer(channel, timeout=5.0)
    heard: list[tuple[str, Any, bool]] = []
    peer.on("shot.*", lambda event, data: heard.append((event, data, on_qt_main_thread())))
    host_heard: list[tuple[str, Any]] = []
    host.on("panel.*", lambda event, data: host_heard.append((event, data)))
    try:
        host.emit("shot.changed", {"shot": "sh010"})
        assert heard == [("shot.changed", {"shot": "sh010"}, True)]
        peer.emit("panel.opened", {"id": 1})
        assert host_heard == [("panel.opened", {"id": 1})]
        host.register("test.later", lambda: "later")  # a new handler is announced
        assert "test.later" in peer.remote_handler_names
        assert peer.request("test.later") == "later"
    finally:
        peer.close()
        channel.close()


def test_what_reaches_an_in_process_channel_before_its_peer_waits_for_it(host: QtHost) -> None:
    channel = create_for_context()
    try:
        host.emit("shot.changed", {"shot": "sh020"})  # no handler yet: queued
        assert channel.receive(timeout=1.0).data == {"shot": "sh020"}
        host.register("test.added", lambda: "added")  # its ready waits for a handler
        peer = Peer(channel, timeout=5.0)
        assert "test.added" in peer.remote_handler_names
        assert peer.request("test.added") == "added"
        peer.close()
    finally:
        channel.close()


def test_a_closing_host_fails_its_in_process_clients(host: QtHost) -> None:
    channel = create_for_context()
    peer = Peer(channel, timeout=5.0)
    stop_host()
    assert channel.is_shutdown()
    with pytest.raises(IpcCallError) as info:
        peer.request("test.on_main")
    assert info.value.code == ErrorCode.SHUTTING_DOWN


# -- start_host() again --------------------------------------------------------------


def test_start_host_again_returns_the_host_or_names_what_differs(host: QtHost) -> None:
    assert start_host() is host
    assert start_host(host.name, peer_name="traps") is host
    with pytest.raises(HostSettingsError, match=r"name='other' \(running: '"):
        start_host("other")
    with pytest.raises(HostSettingsError) as info:
        start_host(host.name, token="s3cret", peer_name="maya-2025")
    message = str(info.value)
    assert "token (differs)" in message and "s3cret" not in message  # a token is not shown
    assert "peer_name='maya-2025' (running: 'traps')" in message
    assert current_host() is host


# -- call_in_main_thread -------------------------------------------------------------


def test_call_in_main_thread_passes_keyword_arguments(host: QtHost, qtbot: Any) -> None:
    def where(a: int, b: int = 0, *, c: int = 0) -> list[Any]:
        return [a, b, c, on_qt_main_thread()]

    assert in_thread(qtbot, lambda: host.call_in_main_thread(where, 4, c=5)) == [4, 0, 5, True]
    assert host.call_in_main_thread(where, 6, b=7, timeout=1.0) == [6, 7, 0, True]  # inline


CALL_WITH_KWARGS = """
import json, sys, threading
from qtpy import QtCore
from aurora_dcc import call_in_main_thread
app = QtCore.QCoreApplication([])
main = threading.get_ident()
result = {}
def where(a, b=0, *, c=0):
    return [a, b, c, threading.get_ident() == main]
def worker():
    result["value"] = call_in_main_thread(where, 1, b=2, c=3, timeout=10.0)
thread = threading.Thread(target=worker)
thread.start()
poll = QtCore.QTimer()
poll.timeout.connect(lambda: thread.is_alive() or app.quit())
poll.start(10)
app.exec()
sys.stdout.write(json.dumps(result))
"""


@pytest.mark.subprocess
def test_the_process_wide_call_in_main_thread_passes_keyword_arguments() -> None:
    # Its own process: the process-wide channel ends with the application (aboutToQuit).
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, "-c", CALL_WITH_KWARGS],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout
    assert json.loads(out) == {"value": [1, 2, 3, True]}


# -- progress while a handler runs -----------------------------------------------------


def test_events_a_handler_emits_reach_the_client_as_they_are_emitted(
    host: QtHost, qtbot: Any
) -> None:
    emitted: list[float] = []

    def work_with_progress() -> str:  # on the main thread; nothing else runs there meanwhile
        for step in range(PROGRESS_STEPS):
            if step:
                time.sleep(PROGRESS_GAP)
            emitted.append(time.monotonic())
            host.emit("work.progress", {"step": step})
        time.sleep(PROGRESS_GAP)
        return "done"

    host.register("work.progress", work_with_progress)
    arrived: list[float] = []

    def client() -> float:
        channel = LocalSocketChannel.connect(host.name, timeout=10.0)
        with Peer(channel, timeout=10.0) as peer:
            peer.on("work.progress", lambda _event, _data: arrived.append(time.monotonic()))
            assert peer.request("work.progress") == "done"
            answered = time.monotonic()
        channel.close()
        return answered

    answered = in_thread(qtbot, client, timeout=20.0)
    assert len(arrived) == PROGRESS_STEPS
    lags = [got - sent for got, sent in zip(arrived, emitted)]
    assert all(lag < PROGRESS_LAG for lag in lags), lags
    assert all(got < answered for got in arrived)


class _CountingOs:
    """``os`` for the Qt socket writer, counting its direct writes."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, fd: int, data: bytes) -> int:
        self.writes += 1
        return os.write(fd, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def test_a_burst_of_events_from_a_handler_is_still_batched(
    host: QtHost, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingOs()
    monkeypatch.setattr(socket_writer, "os", counting)
    ticks = 500

    def burst() -> int:
        counting.writes = 0
        for step in range(ticks):
            host.emit("work.tick", {"step": step})
        return ticks

    host.register("work.burst", burst)

    def client() -> list[int]:
        channel = LocalSocketChannel.connect(host.name, timeout=10.0)
        received: list[int] = []
        with Peer(channel, timeout=10.0) as peer:
            peer.on("work.tick", lambda _event, data: received.append(data["step"]))
            assert peer.request("work.burst") == ticks
        channel.close()
        return received

    assert in_thread(qtbot, client, timeout=20.0) == list(range(ticks))
    if socket_writer.direct_writes_possible():
        assert counting.writes < ticks // 10  # held and written together, not one each


# -- the Blender host (real bpy, pump mode) ----------------------------------------------


@pytest.mark.subprocess
@pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None,
    reason="the bpy module is not installed in this Python (CPython 3.11 only: the test extra"
    " installs it there)",
)
def test_the_blender_host_has_none_of_the_traps() -> None:
    proc = subprocess.run(
        [sys.executable, str(CHILDREN / "blender_traps.py"), unique_channel_name("aurora_trap")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["same_settings_same_host"] is True
    assert "token (differs)" in report["other_token"]
    assert report["context_channel"] == "InProcessChannel"
    assert report["main_thread_request"] is True and report["main_thread_request_s"] < 1.0
    assert report["scene_ls"] is True
    assert report["worker_request"] is True
    assert report["kwargs"] == [1, 2, True]
    assert report["socket_clients"] == 0
    assert report["progress_result"] == "done"
    assert report["progress_before_response"] is True
    assert all(lag < PROGRESS_LAG for lag in report["progress_lags"]), report["progress_lags"]
    assert report["closed_channel_shut_down"] is True
