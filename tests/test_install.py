"""``aurora-dcc install / uninstall / env`` against a temporary home folder.

Every test points ``HOME`` (and each DCC's own variables: ``MAYA_APP_DIR``,
``HOUDINI_USER_PREF_DIR``, ``LOCALAPPDATA``, ``BLENDER_USER_SCRIPTS``, ...)
into ``tmp_path``; the real home folder is never touched. What users rely on:
the conventional files with the right content, a second install that changes
nothing, an uninstall that leaves the tree as it was byte for byte (the
user's own lines included), a dry run that writes nothing, and entries that
really make ``import aurora_dcc`` work with only the paths they declare.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Optional

import pytest

from aurora_dcc.cli.deploy_commands import add_commands
from aurora_dcc.deploy import payload

REPO = Path(__file__).resolve().parent.parent
HOSTS = REPO / "hosts"
VERSION = payload.package_version()
BLENDER = shutil.which("blender")

_DCC_VARIABLES = (
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "MAYA_APP_DIR",
    "HOUDINI_USER_PREF_DIR",
    "LOCALAPPDATA",
    "APPDATA",
    "BLENDER_USER_SCRIPTS",
    "BLENDER_USER_CONFIG",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home folder in tmp_path; no DCC variable points elsewhere."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.setenv("USERPROFILE", str(folder))
    for name in _DCC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return folder


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``aurora-dcc <argv>`` through the subcommands as the CLI adds them."""
    parser = argparse.ArgumentParser(prog="aurora-dcc")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    status = args.run(args)
    out, err = capsys.readouterr()
    return status, out, err


def snapshot(root: Path) -> dict[str, Optional[bytes]]:
    """Every folder (None) and file (its bytes) under ``root``."""
    return {
        path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "aurora_dcc"


def copy_dir(home: Path) -> Path:
    return data_dir(home) / VERSION


def _install_twice_then_uninstall(
    capsys: pytest.CaptureFixture[str], home: Path, dcc: str, *options: str
) -> tuple[str, dict[str, Optional[bytes]]]:
    """Install (returns its output and the tree), check a 2nd install and the uninstall."""
    before = snapshot(home)
    status, out, err = cli(capsys, "install", dcc, *options)
    assert status == 0, err
    installed = snapshot(home)
    assert installed != before

    status, again, err = cli(capsys, "install", dcc, *options)
    assert status == 0, err
    assert snapshot(home) == installed  # byte for byte
    changes = [line for line in again.splitlines()[1:] if line.startswith("  ")]
    assert changes and all(line.split()[0] in ("unchanged", "note") for line in changes), again

    status, removed, err = cli(capsys, "uninstall", dcc)
    assert status == 0, err
    assert snapshot(home) == before, removed
    return out, installed


def test_maya_gets_a_module_file_for_the_chosen_versions(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "maya" / "2025" / "prefs").mkdir(parents=True)
    (home / "maya" / "modules").mkdir()
    (home / "maya" / "modules" / "studio.mod").write_text("+ studio 1.0 /studio\n")
    out, tree = _install_twice_then_uninstall(
        capsys, home, "maya", "--dcc-version", "2025", "--dcc-version", "2026"
    )
    module = tree["maya/modules/aurora_dcc.mod"]
    assert module is not None
    root = copy_dir(home)
    assert module.decode().splitlines() == [
        f"+ MAYAVERSION:2025 aurora_dcc {VERSION} {root}",
        "scripts: hosts/maya",
        "PYTHONPATH+:=python",
        f"+ MAYAVERSION:2026 aurora_dcc {VERSION} {root}",
        "scripts: hosts/maya",
        "PYTHONPATH+:=python",
    ]
    copied = root.relative_to(home).as_posix()
    assert (
        tree[f"{copied}/hosts/maya/userSetup.py"] == (HOSTS / "maya" / "userSetup.py").read_bytes()
    )
    assert tree[f"{copied}/python/aurora_dcc/__init__.py"] is not None
    assert tree[f"{copied}/python/qtpy/__init__.py"] is not None
    assert f"{home}/maya/modules/aurora_dcc.mod" in out


def test_maya_without_versions_gets_one_entry_for_every_version(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAYA_APP_DIR", str(home / "mayaprefs"))
    _, tree = _install_twice_then_uninstall(capsys, home, "maya")
    module = tree["mayaprefs/modules/aurora_dcc.mod"]
    assert module is not None
    assert module.decode().splitlines()[0] == f"+ aurora_dcc {VERSION} {copy_dir(home)}"


def test_houdini_gets_a_package_with_real_paths_for_each_version_found(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "houdini20.5").mkdir()
    (home / "houdini20.0" / "packages").mkdir(parents=True)
    (home / "houdini20.0" / "packages" / "studio.json").write_text("{}\n")
    _, tree = _install_twice_then_uninstall(capsys, home, "houdini")
    root = copy_dir(home)
    for version in ("20.0", "20.5"):
        package = json.loads(tree[f"houdini{version}/packages/aurora_dcc.json"] or b"")
        assert package == {
            "env": [{"PYTHONPATH": {"value": f"{root}/python", "method": "prepend"}}],
            "path": f"{root}/hosts/houdini",
        }
    assert (HOSTS / "houdini" / "scripts" / "python" / "uiready.py").read_bytes() == tree[
        f"{root.relative_to(home).as_posix()}/hosts/houdini/scripts/python/uiready.py"
    ]


def test_houdini_honours_its_user_pref_dir_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOUDINI_USER_PREF_DIR", str(home / "prefs" / "houdini__HVER__"))
    _, tree = _install_twice_then_uninstall(capsys, home, "houdini", "--dcc-version", "21.0")
    assert tree["prefs/houdini21.0/packages/aurora_dcc.json"] is not None


def test_houdini_without_a_version_to_install_for_says_what_to_do(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, "install", "houdini")
    assert status == 2 and out == ""
    assert "start Houdini once, or choose the version with --dcc-version 20.5" in err
    assert snapshot(home) == {}


def test_nuke_gets_a_marked_block_and_the_users_own_lines_stay(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = home / ".nuke" / "init.py"
    init.parent.mkdir()
    init.write_bytes(b"import nuke\nnuke.pluginAddPath('/studio/gizmos')")  # no final newline
    _, tree = _install_twice_then_uninstall(capsys, home, "nuke")
    text = (tree[".nuke/init.py"] or b"").decode()
    assert text.startswith("import nuke\nnuke.pluginAddPath('/studio/gizmos')\n\n# >>> aurora_dcc")
    block = text[text.index("# >>> aurora_dcc >>>") :]
    assert block.endswith("# <<< aurora_dcc <<<\n")
    root = copy_dir(home)
    assert f"nuke.pluginAddPath({str(root / 'python')!r})" in block
    assert f"nuke.pluginAddPath({str(root / 'hosts' / 'nuke')!r})" in block


def test_an_init_py_that_is_not_utf8_is_left_alone_with_a_clear_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = home / ".nuke" / "init.py"
    init.parent.mkdir()
    init.write_bytes(b"# caf\xe9\n")  # Latin-1
    before = snapshot(home)
    status, out, err = cli(capsys, "install", "nuke")
    assert status == 2 and out == ""
    assert f"{init} is not UTF-8 text" in err
    assert snapshot(home) == before


def test_nuke_init_py_made_by_the_install_goes_with_the_uninstall(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, tree = _install_twice_then_uninstall(capsys, home, "nuke")
    assert (tree[".nuke/init.py"] or b"").startswith(b"# >>> aurora_dcc >>>\n")


def test_lines_the_user_adds_after_the_install_survive_the_uninstall(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init = home / ".nuke" / "init.py"
    init.parent.mkdir()
    init.write_text("# mine\n")
    assert cli(capsys, "install", "nuke")[0] == 0
    with init.open("a") as file:
        file.write("print('added later')\n")
    assert cli(capsys, "uninstall", "nuke")[0] == 0
    assert init.read_text() == "# mine\n\nprint('added later')\n"


def test_max_gets_a_startup_script_in_each_user_startup_folder(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    local = home / "AppData" / "Local"
    (local / "Autodesk" / "3dsMax" / "2025 - 64bit" / "ENU").mkdir(parents=True)
    monkeypatch.setenv("LOCALAPPDATA", str(local))
    _, tree = _install_twice_then_uninstall(capsys, home, "max")
    script = tree[
        "AppData/Local/Autodesk/3dsMax/2025 - 64bit/ENU/scripts/startup/aurora_dcc_startup.py"
    ]
    assert script is not None
    original = (HOSTS / "3dsmax" / "startup" / "aurora_dcc_startup.py").read_bytes()
    assert script.endswith(original)
    assert repr([str(copy_dir(home) / "python")]).encode() in script
    ast.parse(script)


def test_max_finds_the_language_folders_3ds_max_made(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user = home / "AppData" / "Local" / "Autodesk" / "3dsMax" / "2026 - 64bit"
    (user / "FRA").mkdir(parents=True)
    monkeypatch.setenv("LOCALAPPDATA", str(home / "AppData" / "Local"))
    _, tree = _install_twice_then_uninstall(capsys, home, "max")
    startup = user.relative_to(home) / "FRA" / "scripts" / "startup" / "aurora_dcc_startup.py"
    assert tree[startup.as_posix()] is not None
    assert not any("ENU" in path for path in tree)


def test_a_new_version_replaces_the_old_copy_and_updates_the_entry(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init = home / ".nuke" / "init.py"
    init.parent.mkdir()
    init.write_text("# mine\n")
    with monkeypatch.context() as old_version:
        old_version.setattr(payload, "package_version", lambda: "0.0.9")
        assert cli(capsys, "install", "nuke")[0] == 0
    old_copy = data_dir(home) / "0.0.9"
    assert "0.0.9" in init.read_text() and old_copy.is_dir()

    status, out, err = cli(capsys, "install", "nuke")
    assert status == 0, err
    assert f"remove    {old_copy}{os.sep}" in out
    assert "edit      " + str(init) in out
    assert not old_copy.exists()
    text = init.read_text()
    assert "0.0.9" not in text and str(copy_dir(home)) in text
    assert text.count("# >>> aurora_dcc >>>") == 1 and text.startswith("# mine\n\n# >>> aurora")

    assert cli(capsys, "uninstall", "nuke")[0] == 0
    assert snapshot(home) == {".nuke": None, ".nuke/init.py": b"# mine\n"}


def test_blender_gets_the_addon_and_the_package_in_its_user_scripts(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / ".config" / "blender" / "3.4").mkdir(parents=True)
    out, tree = _install_twice_then_uninstall(capsys, home, "blender", "--no-enable")
    scripts = ".config/blender/3.4/scripts"
    addon = tree[f"{scripts}/addons/aurora_dcc_blender/__init__.py"]
    assert addon == (HOSTS / "blender" / "__init__.py").read_bytes()
    assert tree[f"{scripts}/modules/aurora_dcc/hosts/blender.py"] is not None
    copied = copy_dir(home).relative_to(home).as_posix()
    assert not any(path.startswith(copied) for path in tree)  # Blender keeps its own copy
    assert "Edit > Preferences > Add-ons" in out


@pytest.mark.parametrize("dcc", ["maya", "nuke", "blender"])
def test_a_dry_run_writes_nothing_and_names_every_file(
    dcc: str, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BLENDER_USER_SCRIPTS", str(home / "blender_scripts"))
    status, out, err = cli(capsys, "install", dcc, "--dry-run", "--no-enable")
    assert status == 0, err
    assert snapshot(home) == {}
    assert "(dry run: nothing is written)" in out.splitlines()[0]
    status, _, err = cli(capsys, "install", dcc, "--no-enable")
    assert status == 0, err
    written = {p for p, data in snapshot(home).items() if data is not None}
    listed = {line.split()[1] for line in out.splitlines()[1:] if line.startswith("    create")}
    named = set()
    for line in out.splitlines()[1:]:
        match = re.match(r"  create\s+(\S+)", line)
        if match:
            named.add(Path(match.group(1)))
    for path in written:
        full = home / path
        assert full in named or any((root / rel) == full for root in named for rel in listed), (
            f"{path} was written, the dry run did not name it:\n{out}"
        )


def test_two_dccs_share_the_copy_until_the_last_uninstall(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "install", "maya")[0] == 0
    with_maya = snapshot(home)
    assert cli(capsys, "install", "nuke")[0] == 0
    status, out, _ = cli(capsys, "uninstall", "maya", "--dry-run")
    assert status == 0 and str(copy_dir(home)) not in out  # nuke still uses it
    assert cli(capsys, "uninstall", "maya")[0] == 0
    assert (copy_dir(home) / "python" / "aurora_dcc" / "__init__.py").is_file()
    assert not (home / "maya" / "modules" / "aurora_dcc.mod").exists()
    assert cli(capsys, "install", "maya")[0] == 0
    assert cli(capsys, "uninstall", "nuke")[0] == 0
    assert snapshot(home) == with_maya
    assert cli(capsys, "uninstall", "maya")[0] == 0
    assert snapshot(home) == {}


def test_uninstalling_what_is_not_installed_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = cli(capsys, "uninstall", "houdini")
    assert status == 0 and "nothing to do" in out
    assert snapshot(home) == {}


def test_a_damaged_install_record_is_reported_not_overwritten(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = data_dir(home) / "installed.json"
    record.parent.mkdir(parents=True)
    record.write_text("{not json")
    status, _, err = cli(capsys, "install", "nuke")
    assert status == 2 and "is not aurora_dcc's install record" in err
    assert record.read_text() == "{not json"


def _entry_paths(home: Path, dcc: str) -> tuple[list[str], Path]:
    """What the DCC puts on sys.path from the installed entry, and the startup folder."""
    root = copy_dir(home)
    if dcc == "maya":  # MODULE root, `PYTHONPATH+:=rel` and the scripts folder
        lines = (home / "maya" / "modules" / "aurora_dcc.mod").read_text().splitlines()
        module = Path(lines[0].split(" ", 3)[3])
        scripts = module / lines[1].split(": ", 1)[1]
        paths = [str(module / line.split(":=", 1)[1]) for line in lines if "+:=" in line]
        return [*paths, str(scripts)], scripts / "userSetup.py"
    if dcc == "houdini":
        package = json.loads((home / "houdini20.5" / "packages" / "aurora_dcc.json").read_text())
        paths = [entry["PYTHONPATH"]["value"] for entry in package["env"]]
        return paths, Path(package["path"]) / "scripts" / "python" / "uiready.py"
    init = (home / ".nuke" / "init.py").read_text()
    added = [ast.literal_eval(m) for m in re.findall(r"nuke\.pluginAddPath\((.*)\)", init)]
    menu = [Path(p) / "menu.py" for p in added if (Path(p) / "menu.py").is_file()]
    assert len(menu) == 1 and str(root) in added[0]
    return added, menu[0]


_IMPORT = (
    "import sys; sys.path[:0] = {paths!r}; import importlib.util, aurora_dcc; "
    "print(aurora_dcc.__file__); print(importlib.util.find_spec('qtpy').origin)"
)


@pytest.mark.subprocess
@pytest.mark.parametrize("dcc", ["maya", "houdini", "nuke"])
def test_the_installed_entry_alone_makes_aurora_dcc_importable(
    dcc: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh Python without site-packages (-S), with only the entry's paths: as the DCC."""
    (home / "houdini20.5").mkdir()
    assert cli(capsys, "install", dcc)[0] == 0
    paths, startup = _entry_paths(home, dcc)
    assert startup.is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [sys.executable, "-S", "-c", _IMPORT.format(paths=paths)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=home,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    package, qtpy = result.stdout.splitlines()
    assert Path(package).is_relative_to(copy_dir(home) / "python"), package
    assert Path(qtpy).is_relative_to(copy_dir(home) / "python"), qtpy


@pytest.mark.subprocess
def test_the_installed_max_script_puts_the_copy_on_sys_path_and_guards_the_start(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCALAPPDATA", str(home / "AppData" / "Local"))
    assert cli(capsys, "install", "max", "--dcc-version", "2025")[0] == 0
    script = next((home / "AppData").rglob("aurora_dcc_startup.py"))
    code = (
        f"import runpy, sys; runpy.run_path({str(script)!r}, run_name='__main__'); "
        "import aurora_dcc; print(aurora_dcc.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(copy_dir(home) / "python")
    # no pymxs outside 3ds Max: the guard's one line, and the script returned
    [line] = result.stderr.splitlines()
    assert line.startswith("aurora_dcc: cannot import aurora_dcc: ModuleNotFoundError"), line


@pytest.mark.subprocess
def test_with_the_dccs_python_orjson_is_installed_with_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = cli(capsys, "install", "maya", "--dry-run", "--python", sys.executable)
    assert status == 0, err
    target = copy_dir(home) / "deps" / sys.implementation.cache_tag
    assert (
        f"run       {sys.executable} -m pip install --disable-pip-version-check --target "
        f"{target} 'orjson>=3.9'" in out
    )
    assert "orjson (a faster codec) is optional" not in out
    assert snapshot(home) == {}


@pytest.mark.subprocess
@pytest.mark.skipif(os.name == "nt", reason="a shell script stands for the DCC's Python")
def test_a_dcc_python_older_than_3_9_is_refused_before_anything_is_written(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mayapy = tmp_path / "mayapy"
    mayapy.write_text("#!/bin/sh\necho cpython-37 3 7\n")
    mayapy.chmod(0o755)
    status, out, err = cli(capsys, "install", "maya", "--python", str(mayapy))
    assert status == 2 and out == ""
    assert f"{mayapy} is Python 3.7: aurora_dcc needs 3.9 or newer" in err
    assert snapshot(home) == {}


@pytest.mark.subprocess
def test_the_aurora_dcc_command_runs_install_and_uninstall(home: Path) -> None:
    env = {**os.environ, "HOME": str(home)}
    command = [sys.executable, "-m", "aurora_dcc.cli"]
    for argv, first_line in [
        (
            ["install", "nuke", "--dry-run"],
            "Install aurora_dcc for Nuke (dry run: nothing is written)",
        ),
        (["install", "nuke"], "Install aurora_dcc for Nuke"),
        (["uninstall", "nuke"], "Uninstall aurora_dcc from Nuke"),
    ]:
        done = subprocess.run(
            command + argv, capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == first_line
    assert snapshot(home) == {}


def test_env_prints_the_variables_for_this_aurora_dcc(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "env", "houdini", "--format", "json")
    assert status == 0
    variables = json.loads(out)["variables"]
    packages = str(payload.PACKAGE_DIR.parent)
    assert variables["PYTHONPATH"] == {"prepend": [packages]}
    startup = payload.startup_files_dir()
    assert variables["HOUDINI_PATH"] == {"prepend": [str(startup / "houdini")], "default": "&"}


@pytest.mark.subprocess
@pytest.mark.skipif(os.name == "nt", reason="sh syntax")
def test_env_output_sets_the_variables_in_a_shell(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "env", "maya", "--format", "sh")
    assert status == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        ["sh", "-c", out + '\nprintf %s "$PYTHONPATH"'],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": "/studio/python"},
        timeout=30,
        check=False,
    )
    startup = payload.startup_files_dir()
    expected = [str(payload.PACKAGE_DIR.parent), str(startup / "maya"), "/studio/python"]
    assert result.stdout == ":".join(expected), result.stderr


def test_env_refuses_a_folder_that_would_shadow_the_dccs_qt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "PySide6").mkdir()
    monkeypatch.setattr(payload, "PACKAGE_DIR", tmp_path / "aurora_dcc")
    status, out, err = cli(capsys, "env", "nuke")
    assert status == 2 and out == ""
    assert "also holds PySide6" in err


def _blender_report(home: Path, expr: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HOME=str(home), TMPDIR=str(home))
    result = subprocess.run(
        [str(BLENDER), "-b", "--python-exit-code", "3", "--python-expr", expr],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(lines[-1][len("REPORT ") :])


_BLENDER_STATE = """
import addon_utils, json
loaded_default, loaded = addon_utils.check("aurora_dcc_blender")
import aurora_dcc
print("REPORT " + json.dumps({"enabled": loaded_default, "aurora_dcc": aurora_dcc.__file__}))
"""


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(BLENDER is None, reason="no `blender` executable (apt-get install blender)")
def test_blender_install_enables_the_addon_and_uninstall_disables_it(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real Blender, with its user folders in the temporary home."""
    monkeypatch.setenv("TMPDIR", str(home))  # Blender's own temp files, and the add-on's socket
    status, out, err = cli(capsys, "install", "blender", "--blender", str(BLENDER))
    assert status == 0, err
    assert "enable the add-on in Blender's preferences" in out
    state = _blender_report(home, _BLENDER_STATE)
    scripts = next((home / ".config" / "blender").glob("*/scripts"))
    assert state["enabled"] is True
    assert Path(state["aurora_dcc"]).is_relative_to(scripts / "modules" / "aurora_dcc")

    status, out, err = cli(capsys, "uninstall", "blender")
    assert status == 0, err
    assert not (scripts / "addons" / "aurora_dcc_blender").exists()
    assert not (scripts / "modules").exists()
    expr = (
        "import addon_utils, json; "
        "print('REPORT ' + json.dumps(addon_utils.check('aurora_dcc_blender')[0]))"
    )
    assert _blender_report(home, expr) is False
    left = {p for p in snapshot(home) if not p.startswith(".config/blender")}
    assert not any(p.startswith(".local") for p in left), left


def _wheel_builder() -> Optional[str]:
    """A Python with setuptools (>= 64) and wheel: this one, or the system's."""
    check = "import setuptools, wheel; assert int(setuptools.__version__.split('.')[0]) >= 64"
    for python in dict.fromkeys([sys.executable, shutil.which("python3"), "/usr/bin/python3"]):
        if python and os.path.exists(python):
            done = subprocess.run([python, "-c", check], capture_output=True, timeout=60)
            if done.returncode == 0:
                return python
    return None


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_wheel_carries_the_startup_files_and_the_license(tmp_path: Path) -> None:
    """Built from a copy of the checkout with setuptools' own PEP 517 hook (offline);
    unpacked as pip installs a pure wheel, the installer finds the startup files there."""
    python = _wheel_builder()
    if python is None:
        pytest.skip("no Python here has setuptools >= 64 and wheel to build the wheel offline")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "aurora_dcc", source / "aurora_dcc", ignore=ignore)
    shutil.copytree(HOSTS, source / "hosts", ignore=ignore)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            python,
            "-c",
            f"from setuptools import build_meta; build_meta.build_wheel({str(wheels)!r})",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=source,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = wheels.glob("aurora_dcc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    startup = "aurora_dcc/deploy/startup_files"
    for path in HOSTS.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            assert f"{startup}/{path.relative_to(HOSTS).as_posix()}" in names
    assert any(re.fullmatch(r"aurora_dcc-[^/]+\.dist-info/(licenses/)?LICENSE", n) for n in names)
    assert not any(name.startswith("hosts/") for name in names)  # no top-level "hosts"

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip does with a pure-Python wheel
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r}); "
        "from aurora_dcc.deploy import payload; print(payload.startup_files_dir())"
    )
    found = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == site / startup
