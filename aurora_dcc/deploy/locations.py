"""Where each DCC looks for a user's own startup entries, and where aurora_dcc keeps its copy.

Every folder here is a user-level one (under the home folder or the user's
application data): writing there never needs admin rights. Each function reads
the environment variable the DCC itself honours first (``MAYA_APP_DIR``,
``HOUDINI_USER_PREF_DIR``, ``BLENDER_USER_SCRIPTS``, ...), then the platform's
default, so an install lands where that DCC, started by this user, will look.

Usage::

    from aurora_dcc.deploy import locations
    locations.maya_modules_dir()            # ~/maya/modules on Linux
    locations.houdini_packages_dirs([])     # the packages folder of each ~/houdiniX.Y
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from .errors import DeployError


def home() -> Path:
    """The user's home folder (``$HOME``; ``%USERPROFILE%`` on Windows)."""
    return Path(os.path.expanduser("~"))


def _platform() -> str:
    return (
        "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"
    )


def _env_path(name: str) -> Optional[Path]:
    value = os.environ.get(name, "").strip()
    return Path(value) if value else None


def data_dir() -> Path:
    """aurora_dcc's own per-user folder: the copies DCCs load, and what was installed."""
    platform = _platform()
    if platform == "windows":
        base = _env_path("LOCALAPPDATA") or home() / "AppData" / "Local"
    elif platform == "macos":
        base = home() / "Library" / "Application Support"
    else:
        base = _env_path("XDG_DATA_HOME") or home() / ".local" / "share"
    return base / "aurora_dcc"


def maya_modules_dir() -> Path:
    """The user's Maya modules folder, which every Maya version of this user scans."""
    app_dir = _env_path("MAYA_APP_DIR")
    if app_dir is not None:
        return app_dir / "modules"
    platform = _platform()
    if platform == "windows":
        return home() / "Documents" / "maya" / "modules"
    if platform == "macos":
        return home() / "Library" / "Preferences" / "Autodesk" / "maya" / "modules"
    return home() / "maya" / "modules"


_HOUDINI_VERSION = re.compile(r"\d+\.\d+")


def _houdini_pref_dir(version: str) -> Path:
    platform = _platform()
    if platform == "macos":
        return home() / "Library" / "Preferences" / "houdini" / version
    if platform == "windows":
        return home() / "Documents" / f"houdini{version}"
    return home() / f"houdini{version}"


def _found_houdini_versions() -> list[str]:
    if _platform() == "macos":
        parent, pattern = home() / "Library" / "Preferences" / "houdini", r"(\d+\.\d+)"
    else:
        parent = home() / "Documents" if _platform() == "windows" else home()
        pattern = r"houdini(\d+\.\d+)"
    found = [re.fullmatch(pattern, p.name) for p in _subdirs(parent)]
    return sorted({m.group(1) for m in found if m is not None}, key=_version_key)


def houdini_packages_dirs(versions: Sequence[str]) -> list[Path]:
    """The packages folder of each chosen Houdini version's user preferences.

    ``$HOUDINI_USER_PREF_DIR`` wins (``__HVER__`` in it stands for the version);
    without versions, those whose preferences folder exists (Houdini makes it at
    its first start).
    """
    for version in versions:
        if not _HOUDINI_VERSION.fullmatch(version):
            raise DeployError(f"a Houdini version is major.minor, e.g. 20.5 (not {version!r})")
    pref_dir = os.environ.get("HOUDINI_USER_PREF_DIR", "").strip()
    if pref_dir and "__HVER__" not in pref_dir:
        return [Path(pref_dir) / "packages"]
    chosen = list(versions) or _found_houdini_versions()
    if not chosen:
        raise DeployError(
            f"no Houdini preferences folder found (e.g. {_houdini_pref_dir('20.5')}): "
            "start Houdini once, or choose the version with --dcc-version 20.5"
        )
    if pref_dir:
        return [Path(pref_dir.replace("__HVER__", v)) / "packages" for v in chosen]
    return [_houdini_pref_dir(v) / "packages" for v in chosen]


def nuke_dir() -> Path:
    """``~/.nuke``: Nuke runs its ``init.py`` at every start, on every platform."""
    return home() / ".nuke"


def max_startup_dirs(versions: Sequence[str]) -> list[Path]:
    """The user startup scripts folder of each chosen 3ds Max version (Windows).

    ``%LOCALAPPDATA%\\Autodesk\\3dsMax\\<version> - 64bit\\<language>\\scripts\\startup``;
    without versions, those whose user folder exists (3ds Max makes it at its first start).
    The language folder is each one 3ds Max made there (``ENU``, ``FRA``, ...), else ``ENU``.
    """
    local = _env_path("LOCALAPPDATA")
    if local is None:
        raise DeployError(
            "3ds Max runs on Windows, where %LOCALAPPDATA% locates its user folders; "
            "elsewhere use `aurora-dcc env max` on the Windows machine"
        )
    parent = local / "Autodesk" / "3dsMax"
    chosen = list(versions)
    if not chosen:
        found = [re.fullmatch(r"(\d{4}) - 64bit", p.name) for p in _subdirs(parent)]
        chosen = sorted({m.group(1) for m in found if m is not None})
    if not chosen:
        raise DeployError(
            f"no 3ds Max user folder found under {parent}: start 3ds Max once, "
            "or choose the version with --dcc-version 2025"
        )
    for version in chosen:
        if not re.fullmatch(r"\d{4}", version):
            raise DeployError(f"a 3ds Max version is a year, e.g. 2025 (not {version!r})")
    folders = []
    for version in chosen:
        user = parent / f"{version} - 64bit"
        languages = sorted(p.name for p in _subdirs(user) if re.fullmatch(r"[A-Z]{3}", p.name))
        folders += [user / lang / "scripts" / "startup" for lang in languages or ["ENU"]]
    return folders


def _blender_config_root() -> Path:
    platform = _platform()
    if platform == "windows":
        appdata = _env_path("APPDATA") or home() / "AppData" / "Roaming"
        return appdata / "Blender Foundation" / "Blender"
    if platform == "macos":
        return home() / "Library" / "Application Support" / "Blender"
    return (_env_path("XDG_CONFIG_HOME") or home() / ".config") / "blender"


def blender_found() -> bool:
    """Whether a Blender user folder exists (or ``$BLENDER_USER_SCRIPTS`` names one)."""
    if _env_path("BLENDER_USER_SCRIPTS") is not None:
        return True
    return any(re.fullmatch(r"\d+\.\d+", p.name) for p in _subdirs(_blender_config_root()))


def blender_scripts_dirs(versions: Sequence[str]) -> list[Path]:
    """The user scripts folder (``addons/``, ``modules/``) of each chosen Blender version.

    ``$BLENDER_USER_SCRIPTS`` wins; without versions, those whose user folder exists.
    """
    for version in versions:
        if not re.fullmatch(r"\d+\.\d+", version):
            raise DeployError(f"a Blender version is major.minor, e.g. 4.2 (not {version!r})")
    scripts = _env_path("BLENDER_USER_SCRIPTS")
    if scripts is not None:
        return [scripts]
    root = _blender_config_root()
    chosen = list(versions) or sorted(
        (p.name for p in _subdirs(root) if re.fullmatch(r"\d+\.\d+", p.name)), key=_version_key
    )
    if not chosen:
        raise DeployError(
            f"no Blender user folder found under {root}: start Blender once, give its "
            "executable with --blender, or choose the version with --dcc-version 4.2"
        )
    return [root / v / "scripts" for v in chosen]


def _subdirs(parent: Path) -> list[Path]:
    try:
        return [p for p in parent.iterdir() if p.is_dir()]
    except OSError:  # missing or unreadable: nothing found there
        return []


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
