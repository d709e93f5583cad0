"""``aurora-dcc env <dcc>``: the environment variables that load aurora_dcc into a DCC.

For studios that start DCCs through rez, a launcher or wrapper scripts
rather than per-user files. The variables point at the aurora_dcc this
command runs from, and at its startup files: run it with the aurora_dcc the
DCCs should load, installed in a folder of its own, e.g.::

    pip install --target /studio/aurora_dcc aurora_dcc   # qtpy comes along
    PYTHONPATH=/studio/aurora_dcc python -m aurora_dcc.cli env maya

A folder that also holds a Qt binding (a venv's site-packages) is refused:
on the DCC's path it would shadow the DCC's own PySide.

Usage::

    text = render(variables("houdini"), "sh")   # lines of `export NAME=value`
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import payload
from .errors import DeployError

FORMATS = ("sh", "cmd", "json")
_BINDINGS = ("PySide6", "PySide2", "PyQt6", "PyQt5", "shiboken6", "shiboken2")


@dataclass(frozen=True)
class Variable:
    """A path list to put in front of a variable's value.

    ``default``: what stands for the DCC's own value when the variable is unset
    (Houdini's ``&``, "the standard Houdini path").
    """

    name: str
    paths: tuple[str, ...]
    default: Optional[str] = None


def default_format() -> str:
    return "cmd" if os.name == "nt" else "sh"


def variables(dcc: str) -> tuple[list[Variable], list[str]]:
    """The variables for ``dcc``, and notes (said as comments) about what is missing."""
    packages = payload.PACKAGE_DIR.parent
    shadowing = [name for name in _BINDINGS if (packages / name).exists()]
    if shadowing:
        raise DeployError(
            f"aurora_dcc runs from {packages}, which also holds {', '.join(shadowing)}: on the "
            "DCC's path it would shadow the DCC's own Qt. Install aurora_dcc into a folder of "
            "its own (pip install --target DIR aurora_dcc), then run "
            f"`PYTHONPATH=DIR python -m aurora_dcc.cli env {dcc}`; or use `aurora-dcc install`"
        )
    notes = []
    spec = importlib.util.find_spec("qtpy")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    if not locations or Path(locations[0]).parent != packages:
        notes.append(
            f"qtpy is not next to aurora_dcc in {packages}: the DCC must import it too "
            "(e.g. pip install --target DIR qtpy, and DIR on PYTHONPATH)"
        )
    python = str(packages)
    startup = payload.startup_files_dir()
    if dcc == "maya":  # Maya runs each userSetup.py on sys.path
        found = [Variable("PYTHONPATH", (python, str(startup / "maya")))]
    elif dcc == "houdini":
        found = [
            Variable("PYTHONPATH", (python,)),
            Variable("HOUDINI_PATH", (str(startup / "houdini"),), default="&"),
        ]
    elif dcc == "nuke":
        found = [Variable("PYTHONPATH", (python,)), Variable("NUKE_PATH", (str(startup / "nuke"),))]
    elif dcc == "max":
        found = [
            Variable("PYTHONPATH", (python,)),
            Variable(
                "ADSK_3DSMAX_STARTUPSCRIPTS_ADDON_DIR", (str(startup / "3dsmax" / "startup"),)
            ),
        ]
    elif dcc == "blender":
        raise DeployError(
            "Blender's Python ignores PYTHONPATH (unless started with --python-use-system-env): "
            "use `aurora-dcc install blender`, or the add-on zip (hosts/README.md)"
        )
    else:
        raise DeployError(f"unknown DCC {dcc!r}: choose one of maya, houdini, nuke, max")
    return found, notes


def render(found: list[Variable], notes: list[str], form: str) -> str:
    """The variables in a shell's syntax (``sh``, ``cmd``) or as JSON."""
    if form == "json":
        data = {
            v.name: {"prepend": list(v.paths), **({"default": v.default} if v.default else {})}
            for v in found
        }
        return json.dumps({"variables": data, "notes": notes}, indent=2)
    if form not in FORMATS:
        raise DeployError(f"unknown format {form!r}: choose one of {', '.join(FORMATS)}")
    comment = "#" if form == "sh" else "rem"
    lines = [f"{comment} {note}" for note in notes]
    for v in found:
        joined = (":" if form == "sh" else ";").join(v.paths)
        if form == "sh":
            tail = f'"${{{v.name}:-{v.default}}}"' if v.default else f'"${{{v.name}:+:${v.name}}}"'
            sep = ":" if v.default else ""
            lines.append(f"export {v.name}={shlex.quote(joined)}{sep}{tail}")
        else:
            unset = f"{joined};{v.default}" if v.default else joined
            lines.append(
                f'if defined {v.name} (set "{v.name}={joined};%{v.name}%")'
                f' else (set "{v.name}={unset}")'
            )
    return "\n".join(lines)
