"""An install as data: the files, folders and marked blocks it owns, and the commands it runs.

A ``Plan`` says everything an install of one DCC writes; ``steps.py``
compares it with the disk to show (dry run) or make the changes, one line
per file, and records what it made so that the uninstall removes exactly
that. Nothing here touches the disk.

Usage::

    copy = OwnedTree(root, files, "aurora_dcc's copy")
    plan = Plan(dcc="nuke", title="Nuke", version="0.1.0", payload=copy)
    init = Path.home() / ".nuke" / "init.py"
    plan.blocks.append(Block(init, "nuke.pluginAddPath(...)\\n", "Nuke's plugin path"))
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

BEGIN = "# >>> aurora_dcc >>>"
"""First line of the block aurora_dcc owns in a file it does not (e.g. ~/.nuke/init.py)."""

END = "# <<< aurora_dcc <<<"
"""Last line of that block."""

BLOCK_NOTE = (
    "# Written by `aurora-dcc install {dcc}`; `aurora-dcc uninstall {dcc}` removes this block."
)

_BLOCK = re.compile(rf"^{re.escape(BEGIN)}$.*?^{re.escape(END)}$\n?", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class OwnedFile:
    """A file the install writes whole and the uninstall deletes."""

    path: Path
    content: bytes
    why: str


@dataclass(frozen=True)
class OwnedTree:
    """A folder the install fills (dropping files no longer in it) and the uninstall deletes.

    ``unmanaged``: names of entries directly under ``root`` that another step
    fills (e.g. ``deps`` that pip fills), left alone when stale files are removed.
    """

    root: Path
    files: Mapping[str, bytes]  # relative POSIX path -> content
    why: str
    unmanaged: tuple[str, ...] = ()


@dataclass(frozen=True)
class Block:
    """Lines in a marked block at the end of a file the user owns; the rest stays untouched."""

    path: Path
    body: str  # the lines between the markers, each ending with a newline
    why: str

    def text(self) -> str:
        return f"{BEGIN}\n{self.body}{END}\n"


@dataclass(frozen=True)
class Command:
    """A program the install runs after writing its files (pip, Blender).

    ``skip_if_exists``: the work is already done when this path exists.
    ``only_if_changed``: run it only when the install changed a file.
    """

    argv: tuple[str, ...]
    why: str
    skip_if_exists: Optional[Path] = None
    only_if_changed: bool = False


@dataclass
class Plan:
    """Everything ``aurora-dcc install <dcc>`` writes and runs for one DCC."""

    dcc: str
    title: str
    version: str  # of aurora_dcc
    payload: Optional[OwnedTree]  # the copy the DCC loads; None where the DCC keeps its own
    trees: list[OwnedTree] = field(default_factory=list)
    files: list[OwnedFile] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    undo_commands: list[Command] = field(default_factory=list)  # run first by the uninstall
    notes: list[str] = field(default_factory=list)  # shown after the changes


def with_block(text: str, block: Block) -> tuple[str, str]:
    """``text`` with ``block`` in it (replacing an older one), and the separator put before it."""
    if _BLOCK.search(text):
        return _BLOCK.sub(lambda _m: block.text(), text, count=1), ""
    separator = "" if not text else "\n" if text.endswith("\n") else "\n\n"
    return text + separator + block.text(), separator


def without_block(text: str, separator: str) -> str:
    """``text`` without aurora_dcc's block (and the separator the install put before it)."""
    match = _BLOCK.search(text)
    if match is None:
        return text
    start = match.start()
    if separator and text[:start].endswith(separator) and match.end() == len(text):
        start -= len(separator)
    return text[:start] + text[match.end() :]
