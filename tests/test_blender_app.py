"""The Blender host inside the real Blender application (under Xvfb), driven from outside.

Blender's own main loop runs here (timers fire only there, not in ``-b`` mode
nor with the ``bpy`` module): the add-on from hosts/blender is enabled as a
user would enable it, and this process, an external client, talks to it.
Each Blender start takes a few seconds, so one Blender serves most tests and
a second one proves the installable zip. ``make blender-deps`` (or CI's
``.ci/run``) installs Blender, Xvfb and xauth with apt; where they are
missing the tests are skipped with that reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from rawclient import RawClient
from support import unique_channel_name, wait_until

from aurora_dcc.errors import ErrorCode
from aurora_dcc.rpc.call_error import IpcCallError
from aurora_dcc.rpc.peer import Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel

BLENDER = shutil.which("blender")
XVFB_RUN = shutil.which("xvfb-run")
REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "children" / "blender_app.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.subprocess,
    pytest.mark.skipif(
        BLENDER is None or XVFB_RUN is None or sys.platform != "linux",
        reason="the Blender application under Xvfb is not installed here (Linux: `make "
        "blender-deps`, i.e. apt-get install -y blender xvfb xauth; CI installs it)",
    ),
]

START_TIMEOUT = 120.0  # Blender's start under Xvfb, on a loaded machine
FACTORY_OBJECTS = ["Camera", "Cube", "Light"]
CLI = [sys.executable, "-m", "aurora_dcc.cli"]
LISTEN_ONE_SELECTION = ["listen", "--count", "1", "selection.changed"]


class BlenderApp:
    """One Blender process serving ``channel`` (an absolute socket path) through the add-on."""

    def __init__(self, tmp: Path, *, addon_zip: Optional[Path] = None, addon: bool = True) -> None:
        self.channel = os.path.join(os.environ["TMPDIR"], unique_channel_name("aurora_b"))
        scripts = tmp / "scripts"
        (scripts / "addons").mkdir(parents=True)
        blender_tmp = tmp / "tmp"  # Blender's own temp files (quit.blend) stay out of $TMPDIR
        blender_tmp.mkdir()
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "PYTHONHOME", "AURORAVIEW_IPC_CHANNEL")
        }
        env.update(
            BLENDER_USER_SCRIPTS=str(scripts),
            AURORA_DCC_BLENDER_CHANNEL=self.channel,
            TMPDIR=str(blender_tmp),
        )
        if addon_zip is None:  # the add-on from the repository, aurora_dcc from its root
            (scripts / "addons" / "aurora_dcc_blender").symlink_to(REPO / "hosts" / "blender")
            env["AURORA_TEST_REPO"] = str(REPO)
        else:  # installed from the zip, as a user does; aurora_dcc from the zip's wheel
            env["AURORA_TEST_ADDON_ZIP"] = str(addon_zip)
        if not addon:
            env["AURORA_TEST_NO_ADDON"] = "1"
        self.stdout_path = tmp / "stdout.txt"
        self.stderr_path = tmp / "stderr.txt"
        # A small window: under Xvfb the viewport is drawn in software, once per changed frame.
        command = [str(XVFB_RUN), "-a", str(BLENDER), "--factory-startup"]
        command += ["--window-geometry", "0", "0", "800", "600"]
        command += ["--python-exit-code", "3", "--python", str(SCRIPT)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                command,
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own group: xvfb-run, Xvfb and Blender end together
            )
        self._peers: list[Peer] = []

    def wait_listening(self) -> None:
        listening = wait_until(
            lambda: os.path.exists(self.channel) or self.proc.poll() is not None,
            timeout=START_TIMEOUT,
        )
        if not (listening and os.path.exists(self.channel)):
            self.kill()
            pytest.fail(
                f"Blender did not start serving (exit {self.proc.returncode}):\n{self.log()}"
            )

    def connect(self) -> Peer:
        # Retries: the socket file appears when bound, a moment before the server listens.
        channel = LocalSocketChannel.connect(self.channel, timeout=10.0, retry=50)
        peer = Peer(channel, timeout=10.0)
        self._peers.append(peer)
        return peer

    def request(self, method: str, data: Any = None) -> Any:
        return self.connect_once().request(method, data)

    def connect_once(self) -> Peer:
        return self._peers[0] if self._peers else self.connect()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log(self) -> str:
        out = self.stdout_path.read_text(errors="replace")
        return f"--- stdout\n{out[-3000:]}\n--- stderr\n{self.stderr()[-5000:]}"

    def quit(self) -> int:
        """Ask Blender to quit (File > Quit) through the host; its exit code."""
        self.connect_once().request("test.quit")
        self.close_clients()
        try:
            return self.proc.wait(timeout=60.0)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"Blender did not quit when asked:\n{self.log()}")

    def close_clients(self) -> None:
        for peer in self._peers:
            peer.close()
            peer.channel.close()
        self._peers.clear()

    def kill(self) -> None:
        self.close_clients()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group this test started
            self.proc.wait(timeout=10.0)
        if os.path.exists(self.channel):
            os.unlink(self.channel)


def tracebacks(stderr: str) -> list[str]:
    """Each traceback printed on ``stderr``, as text."""
    return re.split(r"(?=Traceback \(most recent call last\))", stderr)[1:]


@pytest.fixture(scope="module")
def blender(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlenderApp]:
    """Blender with the add-on from hosts/blender; it must quit cleanly at the end."""
    app = BlenderApp(tmp_path_factory.mktemp("blender"))
    try:
        app.wait_listening()
        yield app
        code = app.quit()
        # The only tracebacks allowed are the logged ones of the handler that raises on purpose.
        unexpected = [t for t in tracebacks(app.stderr()) if "boom inside Blender" not in t]
        assert code == 0 and not unexpected, app.log()
        assert not os.path.exists(app.channel), "the socket file outlived Blender"
    finally:
        app.kill()


def cli(channel: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--channel", channel, "--timeout", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scene_handlers_answer_from_blenders_main_thread(blender: BlenderApp) -> None:
    peer = blender.connect_once()
    info = peer.request("scene.info")
    assert info["host"].startswith("blender-")
    assert info["nodes"] == len(FACTORY_OBJECTS) and info["selection"] == ["Cube"]
    assert peer.request("scene.ls", {"pattern": "C*"}) == ["Camera", "Cube"]
    assert peer.request("scene.select", {"nodes": ["Light"]}) == ["Light"]
    assert peer.request("scene.info")["selection"] == ["Light"]
    with pytest.raises(IpcCallError) as missing:
        peer.request("scene.select", {"nodes": ["Light", "NoSuchObject"]})
    assert missing.value.code == ErrorCode.INVALID_PARAMS
    assert missing.value.data == {"missing": ["NoSuchObject"]}
    assert peer.request("test.main_thread") is True
    state = peer.request("test.state")
    assert state["panel"], "the add-on's sidebar panel is not registered"
    assert not state["modules"]["qtpy"] and not state["modules"]["PySide6"], state


def test_cli_calls_the_scene_in_blender(blender: BlenderApp) -> None:
    result = cli(blender.channel, "call", "scene.ls")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == FACTORY_OBJECTS
    failed = cli(blender.channel, "call", "test.boom")
    assert failed.returncode != 0 and str(ErrorCode.INTERNAL_ERROR.value) in failed.stderr


def test_selection_made_in_blender_reaches_clients(blender: BlenderApp) -> None:
    peer = blender.connect_once()
    events: list[Any] = []
    peer.on("selection.changed", lambda event, data: events.append(data["nodes"]))
    before = peer.request("test.state")["clients"]
    listener = subprocess.Popen(
        [*CLI, "--channel", blender.channel, "--timeout", "30", *LISTEN_ONE_SELECTION],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: peer.request("test.state")["clients"] > before, timeout=30.0)
        peer.request("test.select_later", {"names": ["Camera", "Cube"]})
        assert wait_until(lambda: events, timeout=10.0), "no selection.changed from Blender"
        assert events == [["Camera", "Cube"]]
        out, err = listener.communicate(timeout=30.0)
        assert listener.returncode == 0, err
        assert json.loads(out.splitlines()[0])["data"] == {"nodes": ["Camera", "Cube"]}
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()


def test_a_drag_sends_no_selection_events(blender: BlenderApp) -> None:
    """Moving an object updates the depsgraph on every step; the selection stays: no event."""
    peer = blender.connect_once()
    events: list[Any] = []
    peer.on("selection.changed", lambda event, data: events.append(data))
    updates = peer.request("test.state")["depsgraph_updates"]
    peer.request("test.drag", {"steps": 10, "interval": 0.0})
    assert wait_until(
        lambda: peer.request("test.state")["depsgraph_updates"] >= updates + 8, timeout=30.0
    ), "the drag did not update the depsgraph"
    time.sleep(0.3)  # longer than the selection check's coalescing period: any event is in
    assert events == []


def test_a_handler_that_raises_answers_internal_error(blender: BlenderApp) -> None:
    peer = blender.connect_once()
    with pytest.raises(IpcCallError) as error:
        peer.request("test.boom")
    assert error.value.code == ErrorCode.INTERNAL_ERROR
    assert "boom inside Blender" in error.value.message
    assert peer.request("scene.ls") == FACTORY_OBJECTS  # Blender keeps serving


def test_a_client_vanishing_mid_request_leaves_blender_responsive(blender: BlenderApp) -> None:
    with RawClient.connect(blender.channel) as raw:
        raw.hello()
        raw.send({"type": "request", "id": "gone", "method": "test.sleep", "data": [0.3]})
    # The request is running in Blender's main thread now; its reply finds no one.
    peer = blender.connect_once()
    started = time.monotonic()
    assert peer.request("test.main_thread") is True
    assert time.monotonic() - started < 10.0
    fresh = blender.connect()
    assert fresh.request("scene.ls", {"pattern": "Cam*"}) == ["Camera"]


def test_many_clients_at_once_are_served_on_the_main_thread(blender: BlenderApp) -> None:
    peers = [blender.connect() for _ in range(4)]
    results: list[Any] = []

    def calls(peer: Peer) -> None:
        results.extend(peer.request("test.main_thread") for _ in range(25))

    threads = [threading.Thread(target=calls, args=(peer,)) for peer in peers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60.0)
    assert results == [True] * 100


def test_the_addon_zip_installs_serves_and_quits_cleanly(tmp_path: Path) -> None:
    """The zip from `make blender-addon`, installed as a user would, in a Blender without
    aurora_dcc, qtpy or orjson: it imports aurora_dcc from its wheel and quits cleanly."""
    build = subprocess.run(
        [sys.executable, str(REPO / "hosts" / "build_blender_addon.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    addon_zip = Path(build.stdout.strip())
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    app = BlenderApp(app_dir, addon_zip=addon_zip)
    try:
        app.wait_listening()
        peer = app.connect_once()
        assert peer.request("scene.info")["nodes"] == len(FACTORY_OBJECTS)
        state = peer.request("test.state")
        assert ".whl" in state["aurora_dcc"], state  # not this checkout: the zip's wheel
        assert not state["modules"]["qtpy"], state
        code = app.quit()
        assert code == 0, app.log()
        assert tracebacks(app.stderr()) == [], app.log()
        assert not os.path.exists(app.channel), "the socket file outlived Blender"
    finally:
        app.kill()


def test_a_host_started_by_a_script_closes_cleanly_at_quit(tmp_path: Path) -> None:
    """Without the add-on nothing calls unregister(): the host closes at exit (atexit)."""
    app = BlenderApp(tmp_path, addon=False)
    try:
        app.wait_listening()
        assert app.connect_once().request("scene.ls") == FACTORY_OBJECTS
        assert app.quit() == 0, app.log()
        assert tracebacks(app.stderr()) == [], app.log()
        assert not os.path.exists(app.channel), "the socket file outlived Blender"
    finally:
        app.kill()
