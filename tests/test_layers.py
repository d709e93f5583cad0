"""The package's layers, checked from the source: no import upward, none across a
floor, no cycles.

Floors, lowest first (docs/architecture.md)::

    errors -> protocol -> channel -> {transport, rpc} -> qt -> main_thread
           -> process -> hosts -> {cli, __init__}

A module may import its own floor and below; transport and rpc share a floor but
must not import each other. Every import counts: at module level, inside
functions (lazy imports), under ``if TYPE_CHECKING``, relative forms
(``from . import x``, ``from ..channel import base``) and
``importlib.import_module("aurora_dcc...")`` with a literal name.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from pathlib import Path
from typing import NamedTuple, Optional, Union

import pytest

PACKAGE = "aurora_dcc"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

FLOORS: dict[str, int] = {
    "errors": 0,
    "protocol": 1,
    "channel": 2,
    "transport": 3,
    "rpc": 3,
    "qt": 4,
    "main_thread": 5,
    "process": 6,
    "hosts": 7,
    "deploy": 7,  # the installer: copies the package and startup files, imports neither
    "cli": 8,
    "__main__": 8,
    "__init__": 8,  # the package itself: aurora_dcc/__init__.py
}
"""Each top-level part of the package (a subpackage or module) and its floor."""

APART = {frozenset({"transport", "rpc"}), frozenset({"hosts", "deploy"})}
"""Parts on one floor that must not import each other."""


class Import(NamedTuple):
    module: str  # the importing module, e.g. "aurora_dcc.channel.base"
    path: Path
    line: int
    text: str  # the import statement as written
    target: str  # the aurora_dcc module it loads, e.g. "aurora_dcc.protocol.message"

    def where(self) -> str:
        return f"{self.path}:{self.line}: `{self.text}` ({self.module} -> {self.target})"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root``: dotted name -> file (``pkg/__init__.py`` is ``pkg``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _resolve(target: str, modules: dict[str, Path]) -> str:
    """The module ``target`` loads: itself, or its longest prefix that is a module."""
    while target not in modules and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def imports_of(module: str, path: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """Every import of ``package`` modules in ``path``, wherever in the file it stands."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(node: Union[ast.stmt, ast.expr], target: str) -> None:
        if target == package or target.startswith(package + "."):
            text = ast.get_source_segment(source, node) or ""
            found.append(
                Import(module, path, node.lineno, " ".join(text.split()), _resolve(target, modules))
            )

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute_base(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # `from pkg import name`: a submodule when one has that name, else pkg itself.
                add(node, submodule if submodule in modules else base)
        elif isinstance(node, ast.Call) and _calls_import_module(node):
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                add(node, argument.value)
    return found


@functools.cache
def scan(root: Path, package: str) -> dict[str, tuple[Path, list[Import]]]:
    """Every module under ``root`` with its file and its imports of ``package`` modules."""
    modules = module_names(root, package)
    return {m: (path, imports_of(m, path, modules, package)) for m, path in modules.items()}


def _absolute_base(module: str, is_package: bool, level: int, name: Optional[str]) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".")
    if not is_package:
        parts.pop()  # a plain module's `.` is its package
    if level > 1:
        parts = parts[: -(level - 1)]
    return ".".join([*parts, name] if name else parts)


def _calls_import_module(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__") and bool(node.args)


def part_of(module: str) -> str:
    """``aurora_dcc.channel.base`` -> ``channel``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(root: Path, package: str) -> list[str]:
    """Imports upward or across a floor, and modules that are on no floor."""
    problems = []
    for module, (path, imports) in scan(root, package).items():
        here = part_of(module)
        if here not in FLOORS:
            problems.append(f"{path}: {module} is on no floor; add {here!r} to FLOORS")
            continue
        for imp in imports:
            there = part_of(imp.target)
            if there == here or there not in FLOORS:
                continue  # own part (cycles are checked apart); unknown parts reported above
            if FLOORS[there] > FLOORS[here]:
                problems.append(f"{imp.where()}: {here} imports the higher floor {there}")
            elif frozenset({here, there}) in APART:
                problems.append(f"{imp.where()}: {here} and {there} must not import each other")
    return problems


def import_cycles(root: Path, package: str) -> list[str]:
    """Every cycle among modules (strongly connected components), with its imports."""
    modules = scan(root, package)
    edges: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for module, (_path, imports) in modules.items():
        for imp in imports:
            if imp.target != module:
                edges[module].setdefault(imp.target, imp)
    cycles = []
    for component in _strongly_connected(edges):
        if len(component) > 1:
            inside = [
                imp.where()
                for m in sorted(component)
                for t, imp in edges[m].items()
                if t in component
            ]
            cycles.append(
                "cycle among " + ", ".join(sorted(component)) + ":\n  " + "\n  ".join(inside)
            )
    return cycles


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on a deep chain)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in edges:
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(edges[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


# -- the package --------------------------------------------------------------


def test_the_scan_sees_the_package() -> None:
    modules = module_names(ROOT, PACKAGE)
    assert {"aurora_dcc", "aurora_dcc.errors", "aurora_dcc.cli"} <= modules.keys()
    # The scan finds imports at all (a scan that found none would pass anything).
    assert any(
        imp.target == "aurora_dcc.errors"
        for imp in imports_of("aurora_dcc.cli", modules["aurora_dcc.cli"], modules, PACKAGE)
    )


def test_no_module_imports_a_higher_floor_or_across_one() -> None:
    problems = layer_violations(ROOT, PACKAGE)
    assert not problems, "layer violations:\n" + "\n".join(problems)


def test_no_import_cycles() -> None:
    cycles = import_cycles(ROOT, PACKAGE)
    assert not cycles, "\n".join(cycles)


# -- the checker itself, on a scratch package ----------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / PACKAGE
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return package


CLEAN = {
    "__init__.py": "from .cli import main\n",
    "errors.py": "class IpcError(Exception): ...\n",
    "protocol/__init__.py": "",
    "protocol/message.py": "from ..errors import IpcError\n",
    "channel/__init__.py": "from .base import IpcChannel\n",
    "channel/base.py": "from . import shutdown\nfrom aurora_dcc.protocol import message\n",
    "channel/shutdown.py": "",
    "transport/__init__.py": "",
    "transport/stream.py": "import aurora_dcc.channel.base\n",
    "rpc/__init__.py": "",
    "rpc/peer.py": "from ..channel.base import IpcChannel\n",
    "qt/__init__.py": "",
    "main_thread/__init__.py": "",
    "process/__init__.py": "",
    "hosts/__init__.py": "",
    "cli.py": "def main():\n    from .rpc import peer\n",
}


def test_a_clean_scratch_package_passes(tmp_path: Path) -> None:
    root = write_package(tmp_path, CLEAN)
    assert layer_violations(root, PACKAGE) == []
    assert import_cycles(root, PACKAGE) == []


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        (
            "protocol/codec.py",
            "from ..channel import base\n",
            "protocol imports the higher floor channel",
        ),
        ("errors.py", "import aurora_dcc.cli\n", "errors imports the higher floor cli"),
        (
            "channel/metrics.py",
            "def lazy():\n    from aurora_dcc.qt import compat\n",
            "channel imports the higher floor qt",
        ),
        (
            "channel/waker.py",
            "import importlib\nqt = importlib.import_module('aurora_dcc.qt')\n",
            "channel imports the higher floor qt",
        ),
        ("protocol/framing.py", "from .. import rpc\n", "protocol imports the higher floor rpc"),
        (
            "channel/thread.py",
            "from aurora_dcc import IpcChannel\n",
            "imports the higher floor __init__",
        ),
        (
            "transport/retry.py",
            "from ..rpc.peer import Peer\n",
            "transport and rpc must not import each other",
        ),
        ("discovery.py", "", "aurora_dcc.discovery is on no floor"),
    ],
)
def test_the_checker_names_an_upward_import(
    tmp_path: Path, name: str, source: str, expected: str
) -> None:
    root = write_package(tmp_path, {**CLEAN, name: source})
    problems = layer_violations(root, PACKAGE)
    assert len(problems) == 1 and expected in problems[0], problems
    if source:
        assert f"{name}:" in problems[0].replace("\\", "/")  # the file and line
        assert ":1: `" in problems[0] or ":2: `" in problems[0]


def test_the_checker_names_a_cycle(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {**CLEAN, "channel/shutdown.py": "def later():\n    from .base import IpcChannel\n"},
    )
    assert layer_violations(root, PACKAGE) == []
    (cycle,) = import_cycles(root, PACKAGE)
    assert "aurora_dcc.channel.base, aurora_dcc.channel.shutdown" in cycle
    assert "shutdown.py:2: `from .base import IpcChannel`" in cycle.replace("\\", "/")
