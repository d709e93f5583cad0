"""The Blender host with the real ``bpy`` module (``pip install bpy``, CPython 3.11 only).

The host runs in a child process (tests/children/blender_module_host.py) that
imports ``bpy`` and pumps the host on its main thread; Blender's libraries
stay out of the test process. This process is the external client: a plain
socket client written from PROTOCOL.md (``rawclient``) and the ``aurora-dcc``
command. Where ``bpy`` cannot be installed (another Python than 3.11) the
tests are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rawclient import RawClient
from support import ChildProcesses, unique_channel_name, wait_until

from aurora_dcc.errors import ErrorCode
from aurora_dcc.hosts.blender_waker import BlenderWaker

pytestmark = pytest.mark.subprocess

needs_bpy = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None,
    reason="the bpy module is not installed in this Python (it exists for CPython 3.11 only:"
    " the test extra installs it there, or pip install -e '.[blender]')",
)

CLI = [sys.executable, "-m", "aurora_dcc.cli"]
CHILDREN = Path(__file__).resolve().parent / "children"
REPO = CHILDREN.parent.parent
FACTORY_OBJECTS = ["Camera", "Cube", "Light"]


class ModuleHost:
    """The child process serving ``channel``, and a raw client connected to it."""

    def __init__(self, children: ChildProcesses, *options: str) -> None:
        self.channel = unique_channel_name("aurora_bpy")
        self.proc = children.spawn(
            "blender_module_host.py",
            self.channel,
            *options,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.client = self.connect()

    def connect(self) -> RawClient:
        """Connect once the child listens: importing bpy takes a second or more, the socket
        file appears a moment before the server listens, and ``--addon`` restarts the host."""
        clients: list[RawClient] = []

        def connected() -> bool:
            if self.proc.poll() is not None:
                return True
            try:
                clients.append(RawClient.connect(self.channel, timeout=20.0))
            except OSError:  # no socket file yet, or no one listening on it yet
                return False
            return True

        assert wait_until(connected, timeout=60.0) and clients, self.finish()
        clients[0].hello()
        return clients[0]

    def call(self, method: str, data: Any = None, id: str = "r1") -> dict[str, Any]:
        """Send a request; its response frame. Events read meanwhile go to ``events``."""
        frame: dict[str, Any] = {"type": "request", "id": id, "method": method}
        if data is not None:
            frame["data"] = data
        self.client.send(frame)
        while True:
            reply = self.client.recv(timeout=20.0)
            if reply.get("type") == "event":
                self.events.append(reply)
            elif reply.get("type") == "response" and reply.get("id") == id:
                return reply

    def request(self, method: str, data: Any = None, id: str = "r1") -> Any:
        """The result of a request that must succeed."""
        response = self.call(method, data, id)
        assert "error" not in response, response
        return response.get("data")

    def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        return self.client.recv_until(lambda frame: frame.get("type") == "event", timeout)

    def finish(self) -> str:
        out, err = self.proc.communicate(timeout=60.0)
        return f"exit {self.proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err[-4000:]}"

    def stop(self) -> dict[str, Any]:
        """``test.stop``; the child's report that nothing was left behind."""
        assert self.request("test.stop") is True
        self.client.close()
        out, err = self.proc.communicate(timeout=60.0)
        assert self.proc.returncode == 0, f"{out}\n{err[-4000:]}"
        assert "Traceback" not in err, err
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report


@pytest.fixture
def module_host(children: ChildProcesses) -> Iterator[ModuleHost]:
    host = ModuleHost(children)
    yield host
    host.client.close()


@needs_bpy
def test_handlers_run_on_the_pumping_thread_against_real_bpy_data(module_host: ModuleHost) -> None:
    host = module_host
    assert host.request("test.thread") == {"main": True, "pumping": True}
    info = host.request("scene.info")
    assert info["host"].startswith("blender-") and info["nodes"] == len(FACTORY_OBJECTS)
    assert host.request("test.create", {"name": "Thing"}) == "Thing"
    assert host.request("scene.ls", {"pattern": "T*"}) == ["Thing"]
    assert host.request("test.rename", {"old": "Thing", "new": "Renamed"}) == "Renamed"
    assert host.request("scene.ls") == sorted([*FACTORY_OBJECTS, "Renamed"])
    assert host.request("scene.ls", {"pattern": "[CL]*"}) == ["Camera", "Cube", "Light"]
    assert host.request("scene.select", {"nodes": ["Renamed", "Light"]}) == ["Light", "Renamed"]
    event = host.next_event()
    assert event["event"] == "selection.changed"
    assert event["data"] == {"nodes": ["Light", "Renamed"]}
    assert host.request("scene.info")["selection"] == ["Light", "Renamed"]
    refused = host.call("scene.select", {"nodes": ["Nope"]}, id="r2")
    assert refused["error"]["code"] == ErrorCode.INVALID_PARAMS
    report = host.stop()
    assert report["closed"] and not report["socket_left"] and not report["timer_registered"]


@needs_bpy
def test_a_handler_that_stops_the_host_still_gets_its_answer(module_host: ModuleHost) -> None:
    # A closing server says bye and answers what it accepted (PROTOCOL.md, Session 6):
    # a "stop" command may close the host from its own handler on Blender's main thread.
    host = module_host
    host.client.send({"type": "request", "id": "s1", "method": "test.stop_now"})
    frames = []
    with contextlib.suppress(EOFError, ConnectionResetError):
        while True:
            frames.append(host.client.recv(timeout=20.0))
    kinds = [(frame["type"], frame.get("id")) for frame in frames if frame["type"] != "event"]
    assert kinds == [("bye", None), ("response", "s1")], frames
    assert frames[-1].get("data") is True
    host.client.close()
    out, err = host.proc.communicate(timeout=60.0)
    assert host.proc.returncode == 0 and "Traceback" not in err, f"{out}\n{err[-4000:]}"
    report = json.loads(out.strip().splitlines()[-1])
    assert report["closed"] and not report["socket_left"] and not report["timer_registered"]


@needs_bpy
def test_a_selection_made_with_bpy_reaches_clients(module_host: ModuleHost) -> None:
    host = module_host
    assert host.request("test.select_in_blender", {"names": ["Camera"]}) is True
    event = host.next_event()
    assert (event["event"], event["data"]) == ("selection.changed", {"nodes": ["Camera"]})
    # The same selection again is no change: no event.
    assert host.request("test.select_in_blender", {"names": ["Camera"]}, id="r2") is True
    assert host.request("test.select_in_blender", {"names": ["Light"]}, id="r3") is True
    event = host.next_event()
    assert event["data"] == {"nodes": ["Light"]}  # the next event is the next change
    assert host.stop()["depsgraph_handlers_left"] == 0


@needs_bpy
def test_the_cli_calls_and_listens(module_host: ModuleHost) -> None:
    host = module_host
    result = subprocess.run(
        [*CLI, "--channel", host.channel, "--timeout", "20", "call", "scene.ls"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == FACTORY_OBJECTS
    listener = subprocess.Popen(
        [*CLI, "--channel", host.channel, "--timeout", "20", "listen", "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Select until the listener has heard it (it may connect after the first selection).
        names = iter([["Cube", "Light"], ["Camera"]] * 20)
        assert wait_until(
            lambda: (
                listener.poll() is not None
                or host.request("test.select_in_blender", {"names": next(names)}) is None
            ),
            timeout=20.0,
        )
        out, err = listener.communicate(timeout=20.0)
        assert listener.returncode == 0, err
        heard = json.loads(out.splitlines()[0])
        assert heard["event"] == "selection.changed" and heard["data"]["nodes"]
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()
    host.stop()


@needs_bpy
def test_a_flood_of_pipelined_requests_is_answered_in_order(module_host: ModuleHost) -> None:
    host = module_host
    count = 5_000
    frames = b"".join(
        json.dumps({"type": "request", "id": str(i), "method": "scene.ls"}).encode() + b"\n"
        for i in range(count)
    )
    sender = threading.Thread(target=host.client.send_raw, args=(frames,))
    sender.start()  # written while the replies are read: neither side's buffer fills up
    ids: list[str] = []
    while len(ids) < count:  # events (selection.changed, a re-sent ready) may come between
        msg = host.client.recv(timeout=30.0)
        if msg["type"] == "response":
            ids.append(msg["id"])
    sender.join(timeout=30.0)
    assert ids == [str(i) for i in range(count)]
    host.stop()


@needs_bpy
def test_a_flood_is_drained_within_a_budget_per_tick(module_host: ModuleHost) -> None:
    """Requests that take longer together than one tick's budget (8 ms) are spread over
    several ticks: the host's own work (here a ``call_later`` beat; Blender's input and
    redraws in the application) runs between them, not only after the flood."""
    host = module_host
    count = 20
    assert host.request("test.start_beat") is True
    frames = b"".join(
        json.dumps(
            {"type": "request", "id": f"s{i}", "method": "test.slow", "data": [0.004]}
        ).encode()
        + b"\n"
        for i in range(count)
    )
    host.client.send_raw(frames)
    answered = [host.client.recv(timeout=30.0)["data"] for _ in range(count)]
    assert answered == list(range(1, count + 1))
    seen = host.request("test.stop_beat", id="b2")
    assert any(0 < done < count for done in seen), f"no beat ran during the flood: {seen}"
    host.stop()


@needs_bpy
def test_a_flood_waits_in_the_socket_while_the_main_thread_is_busy(
    module_host: ModuleHost,
) -> None:
    """While the main thread is busy, at most ``read_ahead`` (32) requests are queued for
    it and the rest wait unread: a flood keeps few objects alive, so it brings no long
    garbage collection (which would freeze Blender's UI). Nothing is lost or reordered."""
    host = module_host
    count = 1_000  # all fit in the socket's buffer: the client never waits to write
    requests = [{"type": "request", "id": "slow", "method": "test.slow", "data": [0.5]}]
    requests += [{"type": "request", "id": str(i), "method": "test.queued"} for i in range(count)]
    host.client.send_raw(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
    responses: list[dict[str, Any]] = []
    while len(responses) < count + 1:  # events may come between
        msg = host.client.recv(timeout=30.0)
        if msg["type"] == "response":
            responses.append(msg)
    assert [r["id"] for r in responses] == ["slow"] + [str(i) for i in range(count)]
    queued = [r["data"] for r in responses[1:]]
    assert max(queued) <= 32, f"queued for the main thread: up to {max(queued)}"
    host.stop()


@needs_bpy
def test_the_addon_registers_and_unregisters_cleanly(children: ChildProcesses) -> None:
    host = ModuleHost(children, "--addon")
    try:
        assert host.request("test.panel") is True
        assert host.request("scene.ls", {"pattern": "Cu*"}) == ["Cube"]
        report = host.stop()  # the add-on's unregister()
    finally:
        host.client.close()
    assert report == {
        "closed": True,
        "buttons_stopped_cleanly": True,
        "current_host": False,
        "socket_left": False,
        "timer_registered": False,
        "depsgraph_handlers_left": 0,
        "panel_left": False,
    }


@needs_bpy
def test_the_addon_without_aurora_dcc_logs_one_line_and_lets_blender_start() -> None:
    result = subprocess.run(
        [sys.executable, str(CHILDREN / "blender_addon_alone.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["panel"] is False
    assert len(report["log"]) == 1 and "cannot import aurora_dcc" in report["log"][0], report


@needs_bpy
def test_the_addon_zip_installs_as_a_blender_extension(tmp_path: Path, channel_name: str) -> None:
    """The zip from `make blender-addon`, installed as Blender 4.2+'s "Install from Disk"
    does: Blender installs the wheel the manifest lists; enabling starts the host, which
    serves; disabling stops it and leaves nothing behind."""
    build = subprocess.run(
        [sys.executable, str(REPO / "hosts" / "build_blender_addon.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    resources = tmp_path / "resources"  # Blender's user folder: extensions go there
    resources.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            str(CHILDREN / "blender_extension.py"),
            build.stdout.strip(),
            channel_name,
        ],
        env={**os.environ, "BLENDER_USER_RESOURCES": str(resources)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["aurora_dcc"].startswith(str(resources)), report  # the wheel, not this checkout
    assert report["installed"] == ["FINISHED"] and report["ls"] == ["Camera", "Cube"]
    assert report["panel"] and report["host_closed"], report
    assert not any(
        report[key]
        for key in ("host_after_disable", "socket_left", "timer_registered", "panel_after_disable")
    ), report


def test_the_blender_host_imports_without_qt_or_orjson(channel_name: str) -> None:
    """Blender's Python has neither qtpy nor orjson: the package, the host's modules and
    the pure-Python server import and serve without them (the codec falls back to json)."""
    result = subprocess.run(
        [sys.executable, str(CHILDREN / "blender_no_qt.py"), channel_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"asked": ["orjson"], "codec": "json", "reply": "no Qt"}


# -- pump(), without Blender: the waker's own rules ------------------------------------


def test_pump_runs_due_callbacks_in_order_and_returns_at_its_timeout() -> None:
    waker = BlenderWaker()
    ran: list[str] = []
    waker.call_later(0.05, lambda: ran.append("second"))
    waker.call_later(0.0, lambda: ran.append("first"))
    waker.call_later(60.0, lambda: ran.append("never"))
    waker.pump(0.0)
    assert ran == ["first"]  # pump(0): only what is due now
    started = time.monotonic()
    waker.pump(0.3)
    assert ran == ["first", "second"]
    assert time.monotonic() - started >= 0.3


def test_closing_the_waker_ends_pump_none() -> None:
    waker = BlenderWaker()
    threading.Timer(0.1, waker.close).start()
    waker.pump(None)  # until closed
    waker.call_later(0.0, lambda: None)
    waker.wake()  # after close: nothing runs, nothing raises


def test_pump_refuses_another_thread_than_the_hosts() -> None:
    waker = BlenderWaker()
    errors: list[BaseException] = []

    def pump_elsewhere() -> None:
        try:
            waker.pump(0.0)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=pump_elsewhere)
    thread.start()
    thread.join(timeout=10.0)
    assert len(errors) == 1 and "pump()" in str(errors[0])
