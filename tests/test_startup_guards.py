"""Every startup file in hosts/ guards itself: a DCC's startup never breaks because of aurora_dcc.

When aurora_dcc cannot be imported (a child process whose import system
refuses it) or its host's ``start()`` raises (the fakes of tests/fake_dcc,
in this process), the file writes one line saying why and returns normally,
so the DCC's startup goes on (e.g. Maya runs the studio's next
``userSetup.py``). The Blender add-on's import failure is tested in
tests/test_blender_module.py; its ``start()`` failure here.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import runpy
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from support import FAKES

from aurora_dcc.hosts.qt_host import current_host, stop_host

TESTS = os.path.dirname(os.path.abspath(__file__))
HOSTS = os.path.join(os.path.dirname(TESTS), "hosts")

# startup file, the aurora_dcc.hosts module it starts, the DCC's name in its line
STARTUP_FILES = [
    ("maya/userSetup.py", "aurora_dcc.hosts.maya", "Maya"),
    ("houdini/scripts/python/uiready.py", "aurora_dcc.hosts.houdini", "Houdini"),
    ("nuke/menu.py", "aurora_dcc.hosts.nuke", "Nuke"),
    ("3dsmax/startup/aurora_dcc_startup.py", "aurora_dcc.hosts.max3ds", "3ds Max"),
]
SHELF = "maya/shelf_aurora_dcc.py"
IDS = [path.split("/")[0] for path, _, _ in STARTUP_FILES]

# A DCC runs its startup files one after another in one loop, without guarding each:
# a file that raises stops the loop. The child runs one file, then "the next one".
_CHILD = """
import importlib.abc, runpy, sys

sys.path.insert(0, {fakes!r})
sys.version_info = {version_info!r} or sys.version_info


class RefuseAuroraDcc(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "aurora_dcc":
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None


sys.meta_path.insert(0, RefuseAuroraDcc())
for startup in [{path!r}, "the next startup file"]:
    if startup.endswith(".py"):
        runpy.run_path(startup, run_name="__main__")
    else:
        print(startup, "ran")
"""


def _run_without_aurora_dcc(
    path: str, version_info: Any = None
) -> subprocess.CompletedProcess[str]:
    code = _CHILD.format(fakes=FAKES, path=os.path.join(HOSTS, path), version_info=version_info)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.subprocess
@pytest.mark.parametrize(("path", "shim", "dcc"), STARTUP_FILES, ids=IDS)
def test_without_aurora_dcc_a_startup_file_says_so_in_one_line_and_the_next_one_runs(
    path: str, shim: str, dcc: str
) -> None:
    result = _run_without_aurora_dcc(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the next startup file ran"]
    assert result.stderr.splitlines() == [
        "aurora_dcc: cannot import aurora_dcc: ModuleNotFoundError: "
        f"No module named 'aurora_dcc'; {dcc} goes on"
    ]


@pytest.mark.subprocess
def test_the_line_names_the_python_version_when_the_dcc_python_is_too_old() -> None:
    result = _run_without_aurora_dcc(STARTUP_FILES[0][0], version_info=(3, 7, 9, "final", 0))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the next startup file ran"]
    [line] = result.stderr.splitlines()
    assert "(aurora_dcc needs Python 3.9+; this Maya has 3.7)" in line, line


@pytest.mark.subprocess
def test_the_shelf_button_without_aurora_dcc_says_so_in_one_line() -> None:
    result = _run_without_aurora_dcc(SHELF)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["the next startup file ran"]
    assert result.stderr.splitlines() == [
        "aurora_dcc: the host did not start: ModuleNotFoundError: No module named 'aurora_dcc'"
    ]


def _refuse_to_start(monkeypatch: pytest.MonkeyPatch, shim: str) -> list[str]:
    calls: list[str] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        calls.append(shim)
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(importlib.import_module(shim), "start", start)
    return calls


@pytest.mark.parametrize(("path", "shim", "dcc"), STARTUP_FILES, ids=IDS)
def test_when_start_fails_a_startup_file_says_so_in_one_line_and_returns(
    path: str,
    shim: str,
    dcc: str,
    fakes: Any,
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = _refuse_to_start(monkeypatch, shim)
    runpy.run_path(os.path.join(HOSTS, path), run_name="__main__")  # returns: startup goes on
    qtbot.waitUntil(lambda: calls != [])  # some start once the DCC is idle
    qtbot.wait(50)  # a second deferred start would run now: none must
    assert calls == [shim]
    assert current_host() is None
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"aurora_dcc: the host did not start: OSError: [Errno 98] Address already in use; "
        f"{dcc} goes on"
    ]
    assert captured.out == ""
    assert fakes.VIOLATIONS == []


def test_when_start_fails_the_shelf_button_says_so_in_one_line(
    fakes: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _refuse_to_start(monkeypatch, "aurora_dcc.hosts.maya")
    runpy.run_path(os.path.join(HOSTS, SHELF), run_name="__main__")
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "aurora_dcc: the host did not start: OSError: [Errno 98] Address already in use"
    ]
    assert captured.out == ""


@pytest.mark.parametrize("path", [p for p, _, _ in STARTUP_FILES] + [SHELF])
def test_startup_files_parse_as_python_3_7(path: str) -> None:
    """Maya 2022, 3ds Max 2022 and Nuke 13 have Python 3.7: they must read the guard's line,
    not fail on the file's own syntax."""
    with open(os.path.join(HOSTS, path), encoding="utf-8") as file:
        ast.parse(file.read(), filename=path, feature_version=(3, 7))


def test_startup_files_leave_no_names_in_the_namespace_they_run_in(fakes: Any) -> None:
    """Maya runs userSetup.py (and Nuke menu.py) in a namespace shared with the user's code."""
    for path, _, _ in STARTUP_FILES:
        names = runpy.run_path(os.path.join(HOSTS, path), run_name="__main__")
        assert not [n for n in names if not n.startswith("__") and n != "sys"], path
        stop_host()


_BLENDER_CHILD = textwrap.dedent(
    """
    import importlib.util, json, logging, os, sys, tempfile

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger().addHandler(handler)
    os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="aurora-bpy-", dir="/tmp")
    import bpy
    from aurora_dcc.hosts import blender as host_module

    def start(*args, **kwargs):
        raise OSError(98, "Address already in use")

    host_module.start = start
    spec = importlib.util.spec_from_file_location(
        "aurora_dcc_blender", {init!r}, submodule_search_locations=[{addon!r}]
    )
    addon = importlib.util.module_from_spec(spec)
    sys.modules["aurora_dcc_blender"] = addon
    spec.loader.exec_module(addon)
    addon.register()
    addon.unregister()
    import shutil
    shutil.rmtree(os.environ["TMPDIR"], ignore_errors=True)
    print(json.dumps(records))
    """
)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None,
    reason="the bpy module is not installed in this Python (CPython 3.11 only: the test extra)",
)
def test_when_start_fails_the_blender_addon_logs_one_line_and_registers() -> None:
    addon = os.path.join(HOSTS, "blender")
    code = _BLENDER_CHILD.format(init=os.path.join(addon, "__init__.py"), addon=addon)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = json.loads(result.stdout.strip().splitlines()[-1])
    assert records == [
        "aurora_dcc: the Blender host did not start: OSError: [Errno 98] Address already in use"
    ]
