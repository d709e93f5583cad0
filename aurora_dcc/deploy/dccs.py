"""Each DCC's user-level entry: what ``aurora-dcc install <dcc>`` writes, as a ``Plan``.

- Maya: a module file, ``<user modules folder>/aurora_dcc.mod`` (one entry per
  chosen Maya version, or one for every version): the copy's ``python/`` on
  ``PYTHONPATH`` and its ``hosts/maya`` as the module's scripts folder, where
  Maya finds ``userSetup.py``.
- Houdini: a package, ``<prefs>/packages/aurora_dcc.json`` for each chosen
  version, with the copy's real paths: ``PYTHONPATH`` and ``HOUDINI_PATH``
  (Houdini runs ``scripts/python/uiready.py`` from it).
- Nuke: a marked block in ``~/.nuke/init.py`` with two ``nuke.pluginAddPath``
  lines: the copy's ``python/`` (Nuke also puts it on ``sys.path``) and its
  ``hosts/nuke`` (Nuke runs its ``menu.py``).
- 3ds Max: ``aurora_dcc_startup.py`` in each chosen version's user startup
  scripts folder: the copy's ``python/`` on ``sys.path``, then the startup.
- Blender: the add-on folder ``<scripts>/addons/aurora_dcc_blender`` and the
  package in ``<scripts>/modules/aurora_dcc`` (Blender puts ``modules`` on
  ``sys.path``), then the add-on enabled by the given Blender in the background.

The other DCCs load the copy in ``<data>/aurora_dcc/<version>`` (``payload.py``).

Usage::

    plan = plan_for("houdini", Options(versions=("20.5",)))
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from . import locations, payload
from .errors import DeployError
from .plan import BLOCK_NOTE, Block, Command, OwnedFile, OwnedTree, Plan

TITLES = {
    "maya": "Maya",
    "houdini": "Houdini",
    "nuke": "Nuke",
    "max": "3ds Max",
    "blender": "Blender",
}
"""The DCCs ``aurora-dcc install`` knows, by the name given on the command line."""

ORJSON = "orjson>=3.9"
BLENDER_ADDON = "aurora_dcc_blender"
_QUERY_TIMEOUT = 120.0  # a DCC's interpreter or Blender, started once to ask its version


@dataclass(frozen=True)
class Options:
    """What the user chose on the command line.

    Usage::

        Options(versions=("2025",), python="/usr/autodesk/maya2025/bin/mayapy")
    """

    versions: tuple[str, ...] = ()  # the DCC's versions (Maya 2025, Houdini 20.5, ...)
    python: Optional[str] = None  # the DCC's own interpreter: orjson is installed with it
    blender: Optional[str] = None  # the Blender executable that enables the add-on
    enable: bool = True  # Blender: enable the add-on


def _ask(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=_QUERY_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"`{argv[0]}` could not run: {exc}") from exc
    if done.returncode != 0:
        raise DeployError(f"`{' '.join(argv)}` failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def _copy() -> OwnedTree:
    version = payload.package_version()
    why = (
        f"aurora_dcc {version} and qtpy {payload.qtpy_version()} with the startup files, "
        "copied: the DCC loads them from here, not from this Python environment"
    )
    return OwnedTree(
        locations.data_dir() / version, payload.payload_files(), why, unmanaged=(payload.DEPS,)
    )


def _python_paths(plan: Plan, copy: OwnedTree, python: Optional[str]) -> list[Path]:
    """The copy's folders the DCC puts on sys.path; with ``python``, orjson installed for it."""
    paths = [copy.root / payload.PYTHON]
    if python is None:
        plan.notes.append(
            "orjson (a faster codec) is optional: without it aurora_dcc uses json. To install "
            "it with the DCC's own Python, add --python /path/to/that/python (e.g. mayapy)"
        )
        return paths
    answer = _ask(
        [python, "-c", "import sys; print(sys.implementation.cache_tag, *sys.version_info[:2])"]
    )
    match = re.fullmatch(r"([\w.-]+) (\d+) (\d+)", answer.strip())
    if match is None:
        raise DeployError(f"{python} is not a Python interpreter (it answered {answer!r})")
    tag, version = match.group(1), (int(match.group(2)), int(match.group(3)))
    if version < (3, 9):
        raise DeployError(
            f"{python} is Python {version[0]}.{version[1]}: aurora_dcc needs 3.9 or newer "
            "(README: supported DCC versions)"
        )
    target = copy.root / payload.DEPS / tag
    plan.commands.append(
        Command(
            (python, "-m", "pip", "install", "--disable-pip-version-check", "--target",
             str(target), ORJSON),
            f"orjson for {tag}, with the DCC's own Python",
            skip_if_exists=target / "orjson",
        )
    )  # fmt: skip
    return [*paths, target]


def _maya(options: Options) -> Plan:
    for version in options.versions:
        if not re.fullmatch(r"\d{4}", version):
            raise DeployError(f"a Maya version is a year, e.g. 2025 (not {version!r})")
    copy = _copy()
    plan = Plan("maya", "Maya", payload.package_version(), copy)
    paths = _python_paths(plan, copy, options.python)
    lines = []
    for condition in [f"MAYAVERSION:{v} " for v in options.versions] or [""]:
        lines.append(f"+ {condition}aurora_dcc {plan.version} {copy.root}")
        lines.append("scripts: " + (Path(payload.HOSTS) / "maya").as_posix())
        lines += [f"PYTHONPATH+:={p.relative_to(copy.root).as_posix()}" for p in paths]
    which = ", ".join(f"Maya {v}" for v in options.versions) or "every Maya version"
    why = f"a Maya module for {which}: aurora_dcc on PYTHONPATH, its userSetup.py in scripts"
    module = locations.maya_modules_dir() / "aurora_dcc.mod"
    plan.files.append(OwnedFile(module, ("\n".join(lines) + "\n").encode("utf-8"), why))
    plan.notes.append("next: start Maya; the host starts once its UI is up (not in mayapy)")
    return plan


def _houdini(options: Options) -> Plan:
    copy = _copy()
    plan = Plan("houdini", "Houdini", payload.package_version(), copy)
    paths = _python_paths(plan, copy, options.python)
    package = {
        "env": [{"PYTHONPATH": {"value": p.as_posix(), "method": "prepend"}} for p in paths],
        "path": (copy.root / payload.HOSTS / "houdini").as_posix(),
    }
    content = (json.dumps(package, indent=4) + "\n").encode("utf-8")
    why = "a Houdini package: aurora_dcc on PYTHONPATH, its uiready.py on HOUDINI_PATH"
    for packages in locations.houdini_packages_dirs(options.versions):
        plan.files.append(OwnedFile(packages / "aurora_dcc.json", content, why))
    plan.notes.append("next: start Houdini; the host starts once its UI is ready (not in hython)")
    return plan


def _nuke(options: Options) -> Plan:
    copy = _copy()
    plan = Plan("nuke", "Nuke", payload.package_version(), copy)
    paths = [*_python_paths(plan, copy, options.python), copy.root / payload.HOSTS / "nuke"]
    body = BLOCK_NOTE.format(dcc="nuke") + "\nimport nuke\n\n"
    body += "".join(f"nuke.pluginAddPath({str(p)!r})\n" for p in paths)
    why = "aurora_dcc's copy on Nuke's plugin path; Nuke then runs its menu.py"
    plan.blocks.append(Block(locations.nuke_dir() / "init.py", body, why))
    plan.notes.append("next: start Nuke; the host starts with its GUI (not with nuke -t)")
    return plan


def _max(options: Options) -> Plan:
    copy = _copy()
    plan = Plan("max", "3ds Max", payload.package_version(), copy)
    paths = _python_paths(plan, copy, options.python)
    startup = payload.startup_files_dir() / "3dsmax" / "startup" / "aurora_dcc_startup.py"
    prefix = (
        f"# Written by `aurora-dcc install max` (aurora_dcc {plan.version}); "
        "`aurora-dcc uninstall max` removes it.\n"
        "# It puts aurora_dcc's copy on sys.path, then runs hosts/3dsmax/startup/"
        "aurora_dcc_startup.py (below).\n"
        "import sys\n\n"
        f"for _aurora_dcc_path in {[str(p) for p in paths]!r}:\n"
        "    if _aurora_dcc_path not in sys.path:\n"
        "        sys.path.insert(0, _aurora_dcc_path)\n"
        "del _aurora_dcc_path\n\n"
    )
    content = prefix.encode("utf-8") + startup.read_bytes()
    why = "3ds Max runs it at startup: aurora_dcc's copy on sys.path, then the host started"
    for folder in locations.max_startup_dirs(options.versions):
        plan.files.append(OwnedFile(folder / "aurora_dcc_startup.py", content, why))
    plan.notes.append("next: start 3ds Max (2022 or newer); the host starts with it")
    return plan


# One line each (shown as is in the dry run); a failed assert exits Blender with status 3.
_ENABLE = (
    'import addon_utils, bpy; enabled = addon_utils.enable("{name}", default_set=True); '
    'assert enabled, "the add-on {name} did not enable (see above)"; bpy.ops.wm.save_userpref()'
)
_DISABLE = (
    'import addon_utils, bpy; addon_utils.disable("{name}", default_set=True); '
    "bpy.ops.wm.save_userpref()"
)


def _blender_command(blender: str, script: str) -> tuple[str, ...]:
    return (blender, "-b", "--python-exit-code", "3", "--python-expr", script)


def _blender_version(blender: str) -> str:
    match = re.search(r"Blender (\d+\.\d+)", _ask([blender, "-b", "--version"]))
    if match is None:
        raise DeployError(f"`{blender} --version` names no Blender version")
    return match.group(1)


def _blender(options: Options) -> Plan:
    """The versions: chosen; else the given Blender's; else those with a user folder; else
    the version of the ``blender`` on PATH."""
    blender = options.blender
    if blender is not None and shutil.which(blender) is None:
        raise DeployError(f"no Blender executable at {blender!r}")
    versions = options.versions
    if not versions and blender is not None and not os.environ.get("BLENDER_USER_SCRIPTS"):
        versions = (_blender_version(blender),)
    on_path = shutil.which("blender")
    if not versions and not locations.blender_found() and on_path is not None:
        versions = (_blender_version(on_path),)
    if blender is None and options.enable:
        blender = on_path
    plan = Plan("blender", "Blender", payload.package_version(), None)
    addon_why = "the add-on (hosts/blender), as a legacy add-on Blender 3.0+ loads"
    modules_why = f"aurora_dcc {plan.version}, which Blender imports from its modules folder"
    for scripts in locations.blender_scripts_dirs(versions):
        addon = scripts / "addons" / BLENDER_ADDON
        plan.trees.append(OwnedTree(addon, payload.blender_addon_files(), addon_why))
        modules = scripts / "modules" / "aurora_dcc"
        plan.trees.append(OwnedTree(modules, payload.package_files(), modules_why))
    if blender is not None and options.enable:
        plan.commands.append(
            Command(
                _blender_command(blender, _ENABLE.format(name=BLENDER_ADDON)),
                "enable the add-on in Blender's preferences",
                only_if_changed=True,
            )
        )
        plan.undo_commands.append(
            Command(_blender_command(blender, _DISABLE.format(name=BLENDER_ADDON)), "disable")
        )
    else:
        plan.notes.append(
            'then enable it: Blender > Edit > Preferences > Add-ons, search "aurora_dcc", '
            "tick it (or give --blender /path/to/blender to do it now)"
        )
    plan.notes.append(
        "orjson is optional in Blender: without it aurora_dcc uses json"
        + ("; --python is not used for Blender" if options.python else "")
    )
    return plan


_PLANS: dict[str, Callable[[Options], Plan]] = {
    "maya": _maya,
    "houdini": _houdini,
    "nuke": _nuke,
    "max": _max,
    "blender": _blender,
}


def plan_for(dcc: str, options: Options) -> Plan:
    """What installing aurora_dcc into ``dcc`` writes and runs, for the chosen ``options``."""
    try:
        make = _PLANS[dcc]
    except KeyError:
        raise DeployError(f"unknown DCC {dcc!r}: choose one of {', '.join(TITLES)}") from None
    return make(options)
