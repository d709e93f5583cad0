"""Make (or, in a dry run, only show) the changes of an install or an uninstall.

Each file is one line: what happens to it (``create``, ``update``, ``edit``:
aurora_dcc's block in a user's file, ``remove``, ``unchanged``) and why; then
the programs it runs (``run``) and what is left to the user (``note``). A
file already as the plan wants it is not written, so a repeated install
changes nothing; the uninstall removes what
``installed.json`` says the installs made, and the folders they created once
empty, so that the tree is as it was. Files the user owns are only edited
inside aurora_dcc's marked block, and are written whole to a temporary file
first (an interrupted write never leaves half a file).

Usage::

    lines: list[str] = []
    install(plan, dry_run=True, echo=lines.append)     # what would change, nothing written
    install(plan, dry_run=False, echo=lines.append)
    uninstall("nuke", "Nuke", dry_run=False, echo=lines.append)
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable, Optional

from . import locations
from .errors import DeployError, StepFailed
from .plan import Block, Command, OwnedTree, Plan, with_block, without_block
from .state import InstallState, merged_entry

STATE_FILE = "installed.json"
COMMAND_TIMEOUT = 600.0  # pip may download; Blender starts in the background

_WIDTH = 10  # the action column


def state_path() -> Path:
    return locations.data_dir() / STATE_FILE


def _line(action: str, path: object, why: str = "") -> str:
    return f"  {action:<{_WIDTH}}{path}" + (f"  ({why})" if why else "")


def _read(path: Path) -> Optional[bytes]:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _text(path: Path, data: bytes) -> str:
    """A user's file as text, for editing aurora_dcc's block in it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeployError(
            f"{path} is not UTF-8 text ({exc.reason}): aurora_dcc does not edit it; "
            "`aurora-dcc env` prints the settings to make by hand"
        ) from exc


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary file beside ``path``, keeping an existing file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.aurora_dcc-tmp")
    temporary.write_bytes(data)
    if path.exists():
        shutil.copymode(path, temporary)
    os.replace(temporary, path)


def _missing_dirs(paths: Iterable[Path]) -> set[Path]:
    """The folders that writing ``paths`` creates."""
    missing: set[Path] = set()
    for path in paths:
        for parent in path.parents:
            if parent.exists():
                break
            missing.add(parent)
    return missing


def _tree_changes(tree: OwnedTree) -> tuple[list[tuple[str, str]], int]:
    """(action, relative path) of each file to create, update or remove; the unchanged count."""
    changes: list[tuple[str, str]] = []
    unchanged = 0
    for rel, data in tree.files.items():
        current = _read(tree.root / rel)
        if current == data:
            unchanged += 1
        else:
            changes.append(("create" if current is None else "update", rel))
    if tree.root.is_dir():
        for path in sorted(tree.root.rglob("*")):
            rel_parts = path.relative_to(tree.root).parts
            if "__pycache__" in rel_parts or rel_parts[0] in tree.unmanaged or path.is_dir():
                continue
            rel = path.relative_to(tree.root).as_posix()
            if rel not in tree.files:
                changes.append(("remove", rel))
    return changes, unchanged


def _show_tree(tree: OwnedTree, changes: list[tuple[str, str]], unchanged: int) -> list[str]:
    if not changes:
        return [_line("unchanged", f"{tree.root}{os.sep}", f"{unchanged} files; {tree.why}")]
    action = "update" if unchanged or any(a != "create" for a, _ in changes) else "create"
    lines = [_line(action, f"{tree.root}{os.sep}", tree.why)]
    lines += [f"    {a:<{_WIDTH}}{rel}" for a, rel in changes]
    if unchanged:
        lines.append(f"    ({unchanged} files unchanged)")
    return lines


def _apply_tree(tree: OwnedTree, changes: list[tuple[str, str]]) -> None:
    for action, rel in changes:
        path = tree.root / rel
        if action == "remove":
            path.unlink()
        else:
            _write(path, tree.files[rel])


def _run(command: Command) -> None:
    try:
        done = subprocess.run(
            list(command.argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepFailed(f"`{shlex.join(command.argv)}` could not run: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise StepFailed(
            f"`{shlex.join(command.argv)}` failed (exit status {done.returncode}):\n{tail}"
        )


def install(plan: Plan, *, dry_run: bool, echo: Callable[[str], None]) -> None:
    """Write ``plan`` (or only show it): ``echo`` gets one line per file it creates or changes.

    The lines come before anything is written; a failing command (pip, Blender)
    raises ``StepFailed`` after the files are in place and recorded.
    """
    state = InstallState.load(state_path())
    lines = [f"Install aurora_dcc for {plan.title}" + (" (dry run: nothing is written)" * dry_run)]
    targets: list[Path] = [state.path]
    file_work = []
    for owned in plan.files:
        current = _read(owned.path)
        if current == owned.content:
            lines.append(_line("unchanged", owned.path, owned.why))
            continue
        lines.append(_line("create" if current is None else "update", owned.path, owned.why))
        file_work.append(owned)
        targets.append(owned.path)
    blocks: dict[str, dict[str, Any]] = {}
    block_work: list[tuple[Block, str]] = []
    for block in plan.blocks:
        current = _read(block.path)
        text = "" if current is None else _text(block.path, current)
        new_text, separator = with_block(text, block)
        blocks[str(block.path)] = {"created": current is None, "separator": separator}
        if new_text == text:
            lines.append(_line("unchanged", block.path, f"aurora_dcc's block: {block.why}"))
            continue
        if current is None:
            lines.append(_line("create", block.path, f"with aurora_dcc's block only: {block.why}"))
        else:
            where = "aurora_dcc's block added at its end, your lines untouched"
            lines.append(_line("edit", block.path, f"{where}: {block.why}"))
        block_work.append((block, new_text))
        targets.append(block.path)
    tree_work = []
    for tree in ([plan.payload] if plan.payload else []) + plan.trees:
        changes, unchanged = _tree_changes(tree)
        lines += _show_tree(tree, changes, unchanged)
        tree_work.append((tree, changes))
        targets += [tree.root / rel for _, rel in changes]
    changed = bool(file_work or block_work or any(c for _, c in tree_work))

    entry = merged_entry(
        state.dccs.get(plan.dcc, {}),
        {
            "aurora_dcc": plan.version,
            "payload": str(plan.payload.root) if plan.payload else None,
            "files": sorted(str(f.path) for f in plan.files),
            "trees": sorted(str(t.root) for t in plan.trees),
            "blocks": blocks,
            "undo": [list(c.argv) for c in plan.undo_commands],
        },
    )
    state.dccs[plan.dcc] = entry
    if plan.payload is not None:
        state.payloads.append(str(plan.payload.root))
    new_dirs = _missing_dirs(targets)
    state.created_dirs += [str(d) for d in new_dirs]
    old_payloads = [Path(p) for p in state.unreferenced_payloads()]
    state.payloads = [p for p in state.payloads if Path(p) not in old_payloads]
    for old in old_payloads:
        lines.append(_line("remove", f"{old}{os.sep}", "an older aurora_dcc no DCC uses now"))
    state_bytes = state.to_bytes()
    current_state = _read(state.path)
    if current_state != state_bytes:
        why = f"the record of what `aurora-dcc uninstall {plan.dcc}` removes"
        lines.append(_line("create" if current_state is None else "update", state.path, why))

    commands = [
        c
        for c in plan.commands
        if not (c.skip_if_exists is not None and c.skip_if_exists.exists())
        and not (c.only_if_changed and not changed)
    ]
    for command in commands:
        lines.append(_line("run", shlex.join(command.argv), command.why))
    lines += [_line("note", note) for note in plan.notes]
    for line in lines:
        echo(line)
    if dry_run:
        return

    if current_state != state_bytes:  # first: a write failing below stays undoable
        _write(state.path, state_bytes)
    for tree, changes in tree_work:
        _apply_tree(tree, changes)
    for owned in file_work:
        _write(owned.path, owned.content)
    for block, new_text in block_work:
        _write(block.path, new_text.encode("utf-8"))
    for old in old_payloads:
        shutil.rmtree(old, ignore_errors=True)
    for command in commands:
        _run(command)


def _would_be_empty(folder: Path, removed: set[Path]) -> bool:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return all(e in removed or (e.is_dir() and _would_be_empty(e, removed)) for e in entries)


def uninstall(dcc: str, title: str, *, dry_run: bool, echo: Callable[[str], None]) -> None:
    """Remove what the installs for ``dcc`` made (or only show it), one line per file."""
    path = state_path()
    state = InstallState.load(path)
    header = f"Uninstall aurora_dcc from {title}" + (" (dry run: nothing is removed)" * dry_run)
    entry = state.dccs.pop(dcc, None)
    if entry is None:
        echo(header)
        echo(f"  nothing to do: {path} records no install for {title}")
        return
    lines = [header]
    undo = []
    for argv in entry["undo"]:
        if shutil.which(argv[0]) is None:
            lines.append(_line("note", f"{argv[0]} is gone: undo its settings in {title} by hand"))
            continue
        undo.append(argv)
        lines.append(_line("run", shlex.join(argv), f"undo what the install set in {title}"))
    removed: set[Path] = set()
    for tree in entry["trees"]:
        if Path(tree).exists():
            lines.append(_line("remove", f"{tree}{os.sep}", "installed for " + title))
            removed.add(Path(tree))
    for file in entry["files"]:
        if Path(file).exists():
            lines.append(_line("remove", file, "installed for " + title))
            removed.add(Path(file))
    block_work: list[tuple[Path, Optional[str]]] = []
    for file, how in entry["blocks"].items():
        current = _read(Path(file))
        if current is None:
            continue
        text = _text(Path(file), current)
        new_text = without_block(text, how["separator"])
        if how["created"] and not new_text.strip():
            lines.append(_line("remove", file, "only aurora_dcc's block was in it"))
            block_work.append((Path(file), None))
            removed.add(Path(file))
        elif new_text != text:
            lines.append(_line("edit", file, "aurora_dcc's block removed, the rest untouched"))
            block_work.append((Path(file), new_text))
    old_payloads = [Path(p) for p in state.unreferenced_payloads()]
    state.payloads = [p for p in state.payloads if Path(p) not in old_payloads]
    for old in old_payloads:
        if old.exists():
            lines.append(_line("remove", f"{old}{os.sep}", "aurora_dcc's copy, used by no DCC now"))
            removed.add(old)
    if state.is_empty():
        lines.append(_line("remove", path, "no DCC is installed any more"))
        removed.add(path)
    else:
        lines.append(_line("update", path, f"{title} no longer installed"))
    dirs = sorted((Path(d) for d in state.created_dirs), key=lambda d: len(d.parts), reverse=True)
    gone = []
    for folder in dirs:
        if folder.is_dir() and _would_be_empty(folder, removed):
            lines.append(_line("remove", f"{folder}{os.sep}", "created by the install, now empty"))
            removed.add(folder)
            gone.append(str(folder))
    state.created_dirs = [d for d in state.created_dirs if d not in gone]
    for line in lines:
        echo(line)
    if dry_run:
        return

    for argv in undo:
        try:
            _run(Command(tuple(argv), "undo"))
        except DeployError as exc:  # the files go anyway; say what is left to undo by hand
            echo(f"  warning: {exc}")
    for tree in entry["trees"]:
        shutil.rmtree(tree, ignore_errors=True)
    for file in entry["files"]:
        Path(file).unlink(missing_ok=True)
    for file_path, remaining in block_work:
        if remaining is None:
            file_path.unlink(missing_ok=True)
        else:
            _write(file_path, remaining.encode("utf-8"))
    for old in old_payloads:
        shutil.rmtree(old, ignore_errors=True)
    if state.is_empty():
        path.unlink(missing_ok=True)
    else:
        _write(path, state.to_bytes())
    for folder_name in gone:
        folder = Path(folder_name)
        try:
            folder.rmdir()
        except OSError as exc:  # something new appeared in it meanwhile: it stays
            echo(_line("kept", f"{folder}{os.sep}", str(exc.strerror)))
