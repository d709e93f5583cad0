"""The DCC shims (Maya, Houdini, Nuke, 3ds Max) and the thin files each DCC loads.

The DCC APIs cannot run here, so tests/fake_dcc holds fakes of ``maya``,
``hou``, ``nuke`` and ``pymxs`` that follow their documented signatures and
refuse (and record) any call off the Qt main thread. Everything else is
real: the shim starts a ``QtHost`` on this test's Qt event loop and a
pure-Python client (``LocalSocketChannel`` + ``Peer``) on another thread calls
it over a real socket.
"""

from __future__ import annotations

import importlib
import json
import os
import py_compile
import runpy
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest
from qt_helpers import in_thread, unique_name
from support import FAKES

from aurora_dcc.errors import ErrorCode
from aurora_dcc.hosts.qt_host import current_host, stop_host
from aurora_dcc.process.environment import ENV_CHANNEL
from aurora_dcc.rpc.peer import IpcCallError, Peer
from aurora_dcc.transport.local_socket import LocalSocketChannel

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
HOSTS = os.path.join(ROOT, "hosts")


@dataclass
class Dcc:
    shim: str  # the aurora_dcc.hosts module
    host: str
    scene: str
    nodes: list[str]
    pattern: str
    matches: list[str]
    select: list[str]
    user_select: Optional[Callable[[], list[str]]]  # the user selects in the DCC itself
    hooks: Callable[[], int]  # DCC callbacks aurora_dcc has registered


def _maya_user_select() -> list[str]:
    from maya import cmds

    cmds.select("pSphere1", replace=True)
    return ["pSphere1"]


def _houdini_user_select() -> list[str]:
    import hou

    hou.node("/obj/cam1").setSelected(True, clear_all_selected=True)
    return ["/obj/cam1"]


def _max_user_select() -> list[str]:
    from pymxs import runtime as rt

    rt.select(rt.getNodeByName("Camera001"))
    return ["Camera001"]


def _maya_hooks() -> int:
    from maya import cmds

    return len(cmds.jobs())


def _houdini_hooks() -> int:
    import hou

    return len(hou.ui.selectionCallbacks())


def _max_hooks() -> int:
    from pymxs import runtime as rt

    return len(rt.callbacks.scripts)


DCCS = {
    "maya": Dcc(
        shim="aurora_dcc.hosts.maya",
        host="maya-2025",
        scene="/projects/shot010/scenes/layout.ma",
        nodes=["pCube1", "pCylinder1", "pSphere1", "persp", "top"],
        pattern="p*1",
        matches=["pCube1", "pCylinder1", "pSphere1"],
        select=["pCube1", "pCylinder1"],
        user_select=_maya_user_select,
        hooks=_maya_hooks,
    ),
    "houdini": Dcc(
        shim="aurora_dcc.hosts.houdini",
        host="houdini-20.5.332",
        scene="/projects/shot010/layout.hip",
        nodes=["/obj", "/obj/cam1", "/obj/geo1", "/obj/geo1/box1", "/out", "/out/mantra1"],
        pattern="/obj/geo1*",
        matches=["/obj/geo1", "/obj/geo1/box1"],
        select=["/obj/geo1/box1", "/out/mantra1"],
        user_select=_houdini_user_select,
        hooks=_houdini_hooks,
    ),
    "nuke": Dcc(
        shim="aurora_dcc.hosts.nuke",
        host="nuke-15.1v2",
        scene="/projects/shot010/comp/shot010_comp_v003.nk",
        nodes=["Blur1", "Group1", "Group1.Blur2", "Merge1", "Read1", "Write1"],
        pattern="*Blur*",
        matches=["Blur1", "Group1.Blur2"],
        select=["Write1", "Group1.Blur2"],
        user_select=None,  # Nuke has no selection notification: documented, not hooked
        hooks=lambda: 0,
    ),
    "3dsmax": Dcc(
        shim="aurora_dcc.hosts.max3ds",
        host="3dsmax-2024",
        scene="C:\\projects\\shot010\\scenes\\layout_v012.max",
        nodes=["Box001", "Camera001", "Camera001.Target", "Sphere001"],
        pattern="Camera*",
        matches=["Camera001", "Camera001.Target"],
        select=["Sphere001", "Box001"],
        user_select=_max_user_select,
        hooks=_max_hooks,
    ),
}


def _connect(name: str) -> Peer:
    channel = LocalSocketChannel.connect(name, timeout=10.0)
    return Peer(channel, session_started=True, timeout=10.0)


@pytest.mark.parametrize("dcc", list(DCCS.values()), ids=list(DCCS))
def test_a_dcc_host_serves_its_scene_on_the_main_thread(dcc: Dcc, fakes: Any, qtbot: Any) -> None:
    shim = importlib.import_module(dcc.shim)
    host = shim.start(unique_name(), export_env=False)
    assert shim.start() is host  # a shelf button pressed again: the same host
    assert host.peer_name == dcc.host
    assert dcc.hooks() == (0 if dcc.user_select is None else 1)

    client = in_thread(qtbot, lambda: _connect(host.name))
    events: list[list[str]] = []
    client.on("selection.changed", lambda _event, data: events.append(data["nodes"]))

    def call(method: str, data: Any = None) -> Any:
        return in_thread(qtbot, lambda: client.request(method, data))

    def refused(method: str, data: Any) -> IpcCallError:
        with pytest.raises(IpcCallError) as info:
            call(method, data)
        assert info.value.code == ErrorCode.INVALID_PARAMS
        return info.value

    try:
        assert call("scene.info") == {
            "host": dcc.host,
            "scene": dcc.scene,
            "nodes": len(dcc.nodes),
            "selection": [],
        }
        assert call("scene.ls") == dcc.nodes
        assert call("scene.ls", {"pattern": dcc.pattern}) == dcc.matches
        assert call("scene.ls", {"pattern": "nothing*"}) == []

        assert call("scene.select", {"nodes": dcc.select}) == dcc.select
        qtbot.waitUntil(lambda: events == [dcc.select])
        assert call("scene.info")["selection"] == dcc.select  # the DCC's own answer

        error = refused("scene.select", {"nodes": [dcc.select[0], "no_such_node"]})
        assert error.data == {"missing": ["no_such_node"]}
        assert "no_such_node" in error.message
        refused("scene.select", {"nodes": dcc.select[0]})  # a name, not a list
        refused("scene.ls", {"pattern": 3})
        assert call("scene.info")["selection"] == dcc.select  # nothing changed

        expected = [dcc.select]
        if dcc.user_select is not None:  # the user selects in the DCC, on its main thread
            expected.append(dcc.user_select())
            qtbot.waitUntil(lambda: events == expected)

        assert call("scene.select", {"nodes": []}) == []
        expected.append([])
        qtbot.waitUntil(lambda: events == expected)
        assert call("scene.info")["selection"] == []
        assert events == expected  # one event per change: the DCC's echo was not sent again
    finally:
        client.close()
        client.channel.close()
        stop_host()
    assert dcc.hooks() == 0  # unhooked when the host closed
    assert fakes.CALLS, "the shim did not use the DCC's API"
    assert fakes.VIOLATIONS == []


def test_starting_a_host_off_the_main_thread_is_refused(fakes: Any, qtbot: Any) -> None:
    from aurora_dcc.hosts import maya as aurora_maya

    with pytest.raises(RuntimeError, match="main thread"):
        in_thread(qtbot, lambda: aurora_maya.start(unique_name(), export_env=False))
    assert current_host() is None
    assert fakes.VIOLATIONS == []


# -- the thin files each DCC loads ------------------------------------------------


def _thin_files() -> list[str]:
    return sorted(
        os.path.join(folder, name)
        for folder, _dirs, names in os.walk(HOSTS)
        for name in names
        if name.endswith(".py")
    )


def test_every_thin_host_file_compiles(tmp_path: Any) -> None:
    files = _thin_files()
    assert len(files) >= 5
    for path in files:
        py_compile.compile(path, cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_the_houdini_package_points_at_the_repository_once_its_root_is_set() -> None:
    with open(os.path.join(HOSTS, "houdini", "aurora_dcc.json"), encoding="utf-8") as f:
        package = json.load(f)
    env: dict[str, Any] = {}
    for entry in package["env"]:
        env.update(entry)
    assert "AURORA_DCC" in env  # the one line a user sets: this repository's root

    def expand(value: str) -> str:
        return value.replace("$AURORA_DCC", ROOT)

    python_path = expand(env["PYTHONPATH"]["value"])
    assert env["PYTHONPATH"]["method"] == "prepend"
    assert os.path.isfile(os.path.join(python_path, "aurora_dcc", "hosts", "houdini.py"))
    houdini_path = expand(package["path"])
    assert os.path.isfile(os.path.join(houdini_path, "scripts", "python", "uiready.py"))


STARTUP_FILES = [
    ("maya/userSetup.py", "maya-2025"),
    ("houdini/scripts/python/uiready.py", "houdini-20.5.332"),
    ("nuke/menu.py", "nuke-15.1v2"),
    ("3dsmax/startup/aurora_dcc_startup.py", "3dsmax-2024"),
]


@pytest.mark.parametrize(("path", "peer_name"), STARTUP_FILES, ids=[p for p, _ in STARTUP_FILES])
def test_a_startup_file_starts_the_host_on_the_main_thread(
    path: str, peer_name: str, fakes: Any, qtbot: Any
) -> None:
    runpy.run_path(os.path.join(HOSTS, path), run_name="__main__")
    qtbot.waitUntil(lambda: current_host() is not None)  # some defer to the idle loop
    host = current_host()
    assert host is not None
    assert host.peer_name == peer_name
    assert {"scene.info", "scene.ls", "scene.select"} <= set(host.registry.names())
    assert os.environ[ENV_CHANNEL] == host.name  # for the processes the DCC starts
    assert fakes.VIOLATIONS == []


def test_the_maya_shelf_button_starts_the_host_once_and_shows_where_it_listens(
    fakes: Any, qtbot: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shelf = os.path.join(HOSTS, "maya", "shelf_aurora_dcc.py")
    runpy.run_path(shelf, run_name="__main__")
    host = current_host()
    assert host is not None
    runpy.run_path(shelf, run_name="__main__")
    assert current_host() is host
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(f"'maya-2025' listening on '{host.name}'" in line for line in lines)
    assert fakes.VIOLATIONS == []


def test_maya_userSetup_does_nothing_in_batch_mode(
    fakes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maya import cmds

    monkeypatch.setattr(cmds, "BATCH", True)
    runpy.run_path(os.path.join(HOSTS, "maya", "userSetup.py"), run_name="__main__")
    assert "cmds.about" in fakes.CALLS
    assert current_host() is None


def test_the_fakes_refuse_calls_off_the_main_thread(fakes: Any, qtbot: Any) -> None:
    from maya import cmds

    with pytest.raises(RuntimeError, match="main thread"):
        in_thread(qtbot, cmds.ls)
    assert len(fakes.VIOLATIONS) == 1 and fakes.VIOLATIONS[0].startswith("cmds.ls on thread")
    assert sys.modules["maya.cmds"].__file__.startswith(FAKES)
