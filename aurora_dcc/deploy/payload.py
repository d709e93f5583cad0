"""What an install copies: aurora_dcc itself, qtpy, and the DCC startup files.

The DCC loads a copy, in a folder per aurora_dcc version under the user's
aurora_dcc data folder, never the Python environment the installer runs
from: that environment may be a venv that moves, is rebuilt, or holds a Qt
binding or compiled modules for another Python than the DCC's.

The startup files' one source is the repository's top-level ``hosts/``
folder. A checkout (or an editable install) reads them there; a wheel
carries them as ``aurora_dcc/deploy/startup_files/`` (setup.py maps them at
build time).

Usage::

    from aurora_dcc.deploy import payload
    files = payload.payload_files()     # {"python/aurora_dcc/__init__.py": b"...", ...}
    payload.startup_files_dir()         # hosts/ of a checkout, or the wheel's copy
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from .errors import DeployError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
"""The aurora_dcc package folder this installer runs from."""

STARTUP_IN_WHEEL = Path(__file__).resolve().parent / "startup_files"
"""Where an installed wheel keeps the repository's hosts/ folder."""

PYTHON = "python"
"""The payload's folder that the DCC puts on sys.path: aurora_dcc and qtpy."""

HOSTS = "hosts"
"""The payload's folder of startup files, laid out as the repository's hosts/."""

DEPS = "deps"
"""The payload's folder of packages installed with a DCC's own interpreter (--python)."""

_DCC_STARTUP_FOLDERS = ("maya", "houdini", "nuke", "3dsmax")  # Blender's add-on goes elsewhere


def package_version() -> str:
    """The version of the aurora_dcc being installed."""
    try:
        return importlib.metadata.version("aurora_dcc")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH: no metadata
        return str(sys.modules[__name__.split(".")[0]].__dict__["__version__"])


def startup_files_dir() -> Path:
    """The folder laid out as the repository's hosts/: the wheel's copy, else the checkout's."""
    for candidate in (STARTUP_IN_WHEEL, PACKAGE_DIR.parent / "hosts"):
        if (candidate / "maya" / "userSetup.py").is_file():
            return candidate
    raise DeployError(
        f"the DCC startup files are not next to {PACKAGE_DIR}: install aurora_dcc from its "
        "wheel (it carries them) or run aurora-dcc from a checkout of the repository"
    )


def tree_files(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes), without Python's caches."""
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        if any(path == s or s in path.parents for s in skip):
            continue
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _qtpy_files() -> dict[str, bytes]:
    spec = importlib.util.find_spec("qtpy")  # finds it without importing a Qt binding
    if spec is None or not spec.submodule_search_locations:
        raise DeployError(
            "qtpy is not installed next to this aurora_dcc (pip install qtpy), so it cannot "
            "be copied for the DCC"
        )
    qtpy_dir = Path(next(iter(spec.submodule_search_locations)))
    files = {
        f"qtpy/{rel}": data
        for rel, data in tree_files(qtpy_dir, skip=(qtpy_dir / "tests",)).items()
    }
    try:  # qtpy's MIT license travels with the copy
        dist = importlib.metadata.distribution("qtpy")
        for file in dist.files or ():
            if file.name.upper().startswith(("LICENSE", "LICENCE")):
                files[f"qtpy-{dist.version}.{file.name}"] = Path(str(file.locate())).read_bytes()
    except (importlib.metadata.PackageNotFoundError, OSError):
        pass
    return files


def qtpy_version() -> str:
    try:
        return importlib.metadata.version("qtpy")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def payload_files() -> dict[str, bytes]:
    """The payload folder's files: ``python/`` (aurora_dcc, qtpy) and ``hosts/`` (startup)."""
    files = {f"{PYTHON}/aurora_dcc/{rel}": data for rel, data in package_files().items()}
    files.update({f"{PYTHON}/{rel}": data for rel, data in _qtpy_files().items()})
    startup = startup_files_dir()
    for folder in _DCC_STARTUP_FOLDERS:
        for rel, data in tree_files(startup / folder).items():
            files[f"{HOSTS}/{folder}/{rel}"] = data
    files.pop(f"{HOSTS}/houdini/aurora_dcc.json", None)  # by-hand template; install writes its own
    return files


def blender_addon_files() -> dict[str, bytes]:
    """The Blender add-on folder's files (hosts/blender), as Blender loads a legacy add-on."""
    addon = startup_files_dir() / "blender"
    return {"__init__.py": (addon / "__init__.py").read_bytes()}


def package_files() -> dict[str, bytes]:
    """The aurora_dcc package alone (relative to its own folder), e.g. for Blender's modules."""
    return {
        rel: data
        for rel, data in tree_files(PACKAGE_DIR, skip=(STARTUP_IN_WHEEL,)).items()
        if rel.endswith((".py", ".typed"))
    }
