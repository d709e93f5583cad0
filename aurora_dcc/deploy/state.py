"""What the installs made, so that each uninstall removes exactly that: ``installed.json``.

One file in the user's aurora_dcc data folder. Per DCC: the payload it uses,
the files and folders it owns, the blocks it put into the user's files (and
whether it created those files), and the commands that undo what it ran
(Blender's add-on enable). Shared by all DCCs: every payload folder written
and every folder the installs created (removed again once empty).

Usage::

    state = InstallState.load(locations.data_dir() / "installed.json")
    state.dccs["maya"]["files"]      # ["/home/td/maya/modules/aurora_dcc.mod"]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeployError


@dataclass
class InstallState:
    """The record of every install; ``to_bytes()`` is stable, so a repeated install changes nothing.

    Usage::

        state = InstallState.load(path)
        state.dccs.pop("nuke", None)
        path.write_bytes(state.to_bytes())
    """

    path: Path
    dccs: dict[str, dict[str, Any]] = field(default_factory=dict)
    payloads: list[str] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> InstallState:
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                path,
                dict(data["dccs"]),
                list(data["payloads"]),
                list(data["created_dirs"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeployError(
                f"{path} is not aurora_dcc's install record ({exc}); move it away to start afresh"
            ) from exc

    def is_empty(self) -> bool:
        return not self.dccs

    def to_bytes(self) -> bytes:
        data = {
            "comment": "aurora-dcc install/uninstall keeps this record; do not edit it",
            "dccs": self.dccs,
            "payloads": sorted(set(self.payloads)),
            "created_dirs": sorted(set(self.created_dirs)),
        }
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")

    def unreferenced_payloads(self) -> list[str]:
        """Payload folders no installed DCC uses any more."""
        used = {entry["payload"] for entry in self.dccs.values() if entry["payload"]}
        return sorted(p for p in set(self.payloads) if p not in used)


def merged_entry(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A DCC's record after one more install: what both installs own (e.g. two versions).

    A block keeps its first record: whether the first install created the file
    and which separator it added.
    """
    if not old:
        return new
    blocks = dict(new["blocks"])
    blocks.update(old["blocks"])
    undo = list(old["undo"]) + [argv for argv in new["undo"] if argv not in old["undo"]]
    return {
        "aurora_dcc": new["aurora_dcc"],
        "payload": new["payload"],
        "files": sorted(set(old["files"]) | set(new["files"])),
        "trees": sorted(set(old["trees"]) | set(new["trees"])),
        "blocks": blocks,
        "undo": undo,
    }
