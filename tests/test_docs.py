"""The README's and docs/'s Python blocks run as written, and what the docs name exists.

Which documents: ``README.md``, ``hosts/README.md`` and every ``docs/**/*.md``.

Which blocks run: every fenced block whose info string is ``python`` (or
``py``) runs, each in a fresh interpreter (a child process: a block may block,
start processes or import Qt) whose working directory is a fresh folder and
whose ``TMPDIR`` is a private one (so channel names resolve there and no
socket is left behind), with the repository root on ``PYTHONPATH`` and no
``AURORAVIEW_*`` variables. An HTML comment on the line before the fence
changes that:

- ``<!-- not run: REASON -->``: the block is only compiled. The reason is
  required: code for a DCC (``maya``, ``hou``, ``nuke``, ``pymxs``, ``bpy``)
  or one that needs a running event loop. A block that imports a DCC module
  without this marker fails.
- ``<!-- run: with a standalone host serving NAME -->``: the block runs while
  a ``StandaloneHost`` (``make demo``'s host, in a child process, two nodes in
  its scene) serves channel ``NAME``.
- ``<!-- file: NAME -->``: the block is not run itself; it is written as
  ``NAME`` into the folder where the other blocks of the same document run
  (e.g. a backend script that a host block starts).
- ``<!-- run -->`` or ``<!-- run: any note -->``: runs, like no comment.

Also checked: every ``aurora_dcc.x.y`` name in the documents imports (or is an
attribute of a module that does), every repository path in backticks and every
relative link exists, and every class or ``Class.method`` that
``docs/architecture.md`` points a reader to is defined in the package.
"""

from __future__ import annotations

import builtins
import enum
import importlib
import inspect
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", ROOT / "hosts" / "README.md", *(ROOT / "docs").rglob("*.md")])
BLOCK_TIMEOUT = 90.0
HOST_START_TIMEOUT = 30.0
PYTHON_INFOS = {"python", "py", "python3"}
DCC_IMPORT = re.compile(r"^\s*(?:from|import)\s+(maya|hou|nuke|pymxs|bpy|MaxPlus)\b", re.M)
MARKER = re.compile(r"^<!--\s*(not run|run|file)\s*(?::\s*(.*?))?\s*-->$")
HOST_MARKER = re.compile(r"^with a standalone host serving (\S+)$")


@dataclass
class Block:
    doc: Path
    line: int  # of the first line of code
    info: str
    code: str
    marker: Optional[str]  # "not run", "run", "file" or None
    note: str  # the marker's text after the colon

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks_of(doc: Path) -> list[Block]:
    """The fenced code blocks of ``doc``, with the marker comment just before each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```\s*([\w+-]*)", lines[index])
        if opening is None:
            index += 1
            continue
        indent, info = opening.group(1), opening.group(2).lower()
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line[len(indent) :] for line in lines[index + 1 : end]) + "\n"
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.match(lines[before].strip()) if before >= 0 else None
        found.append(
            Block(
                doc,
                index + 2,
                info,
                code,
                marker.group(1) if marker else None,
                (marker.group(2) or "") if marker else "",
            )
        )
        index = end + 1
    return found


def python_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks_of(doc) if b.info in PYTHON_INFOS]


ALL_PYTHON = python_blocks()
RUNNABLE = [b for b in ALL_PYTHON if b.marker in (None, "run")]


def test_the_documents_have_python_blocks_that_run() -> None:
    """The README's own examples are among the blocks run (a parser that found none would pass)."""
    readme = [b for b in RUNNABLE if b.doc == ROOT / "README.md"]
    assert len(readme) >= 3, [b.id for b in RUNNABLE]


@pytest.mark.parametrize("block", ALL_PYTHON, ids=lambda b: b.id)
def test_every_block_compiles_and_dcc_code_is_marked(block: Block) -> None:
    compile(block.code, block.id, "exec")
    if block.marker == "not run":
        assert block.note, f"{block.id}: say why it is not run: <!-- not run: REASON -->"
    elif block.marker == "file":
        assert re.fullmatch(r"[\w.-]+\.py", block.note), f"{block.id}: <!-- file: NAME.py -->"
    else:
        dcc = DCC_IMPORT.search(block.code)
        assert dcc is None, (
            f"{block.id} imports {dcc.group(1)!r}: mark it <!-- not run: needs ... -->"
            if dcc
            else ""
        )


def _child_env(tmpdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURORAVIEW_")}
    env["TMPDIR"] = tmpdir
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def private_tmpdir() -> Iterator[str]:
    """A short, private TMPDIR (socket paths must stay under ~100 bytes), removed after."""
    path = tempfile.mkdtemp(prefix="adoc-", dir=os.environ.get("TMPDIR"))
    if len(path) > 60:
        shutil.rmtree(path)
        path = tempfile.mkdtemp(prefix="adoc-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_HOST_SCRIPT = """
import sys, threading
from aurora_dcc.hosts.standalone import StandaloneHost
from aurora_dcc.qt.compat import QtCore

host = StandaloneHost(sys.argv[1], export_env=False)
host.scene.create("cube")
host.scene.create("sphere")
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
timer = QtCore.QTimer()
timer.timeout.connect(lambda: stop.is_set() and host.app.quit())
timer.start(20)
print("ready", flush=True)
host.app.exec() if hasattr(host.app, "exec") else host.app.exec_()
host.close()
"""


class _Host:
    """A ``StandaloneHost`` in a child process, serving ``address`` until ``stop()``."""

    def __init__(self, address: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _HOST_SCRIPT, address],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            ready = selector.select(HOST_START_TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError(f"the standalone host did not start:\n{log.read_text()}")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
            self.proc.wait(10.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10.0)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.mark.subprocess
@pytest.mark.subprocess
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_block_runs(block: Block, private_tmpdir: str, tmp_path: Path) -> None:
    env = _child_env(private_tmpdir)
    for other in blocks_of(block.doc):
        if other.marker == "file":
            (tmp_path / other.note).write_text(other.code, encoding="utf-8")
    # Padding keeps a traceback's line numbers those of the document.
    script = tmp_path / f"block_{block.line}.py"
    script.write_text("\n" * (block.line - 1) + block.code, encoding="utf-8")
    host_name = HOST_MARKER.match(block.note) if block.marker == "run" else None
    host = (
        _Host(host_name.group(1), env, tmp_path / "host.log")  # resolved in env's TMPDIR
        if host_name is not None
        else None
    )
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
    finally:
        if host is not None:
            host.stop()
    assert result.returncode == 0, (
        f"{block.id} failed (exit {result.returncode}):\n{result.stderr}\n{result.stdout}"
    )


# -- names and paths the documents mention ----------------------------------------

# Not a file name: after a "/", or ending in a file extension (``aurora_dcc.json``).
MODULE_NAME = re.compile(
    r"(?<![/\w])aurora_dcc(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?<!\.json)(?<!\.py)(?<!\.md)(?![\w.])"
)
BACKTICKED_PATH = re.compile(r"`((?:aurora_dcc|tests|bench|examples|hosts|docs)/[\w./-]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _mentions(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    return sorted(
        {
            (str(doc.relative_to(ROOT)), match.group(match.lastindex or 0))
            for doc in DOCS
            for match in pattern.finditer(doc.read_text(encoding="utf-8"))
        }
    )


def _resolves(dotted: str) -> bool:
    """``dotted`` is a module, or an attribute (chain) of the longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize(("doc", "dotted"), _mentions(MODULE_NAME))
def test_module_names_in_the_docs_import(doc: str, dotted: str) -> None:
    assert _resolves(dotted), f"{doc} names {dotted!r}, which does not import"


@pytest.mark.parametrize(("doc", "path"), _mentions(BACKTICKED_PATH))
def test_repository_paths_in_the_docs_exist(doc: str, path: str) -> None:
    assert (ROOT / path.rstrip("/")).exists(), f"{doc} names {path!r}, which does not exist"


@pytest.mark.parametrize(("doc", "target"), _mentions(LINK))
def test_relative_links_in_the_docs_exist(doc: str, target: str) -> None:
    if re.match(r"^[a-z]+:", target) or target.startswith("#"):
        return  # a web address or an anchor
    resolved = ((ROOT / doc).parent / target.split("#")[0]).resolve()
    assert resolved.is_relative_to(ROOT), f"{doc} links {target!r}, outside the repository"
    assert resolved.exists(), f"{doc} links {target!r}, which does not exist"


def _package_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "aurora_dcc").rglob("*.py"))


_CODE_NAME = re.compile(r"`([A-Z][A-Za-z0-9]+)(?:\.([A-Za-z_][A-Za-z0-9_]*))?`")


def _architecture_names() -> list[tuple[str, Optional[str]]]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    names = {(m.group(1), m.group(2)) for m in _CODE_NAME.finditer(text)}
    return sorted(
        (n for n in names if not hasattr(builtins, n[0]) and not re.match(r"Q[A-Z]", n[0])),
        key=lambda n: (n[0], n[1] or ""),
    )


@pytest.mark.parametrize(("name", "attr"), _architecture_names())
def test_names_the_architecture_page_points_to_exist(name: str, attr: Optional[str]) -> None:
    source = _package_source()
    has_class = re.search(rf"^class {name}\b", source, re.M) is not None
    assert has_class, f"docs/architecture.md names {name}: no such class in aurora_dcc"
    if attr is not None:
        has_attr = re.search(rf"^\s+(?:def {attr}\b|{attr}\s*[:=])", source, re.M) is not None
        assert has_attr, f"docs/architecture.md names {name}.{attr}: not in aurora_dcc"


def test_the_readme_links_no_spec_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "../shared" not in readme
    assert "make demo" in readme and "make test" in readme


# -- Usage examples in docstrings -------------------------------------------------

_USAGE = re.compile(r"^\s*Usage\b[^\n]*::\s*$", re.M)


def _package_modules() -> list[str]:
    """Every module of the package, by its dotted name (found on disk: nothing imported)."""
    return sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "aurora_dcc").rglob("*.py")
    )


@pytest.mark.parametrize("module_name", _package_modules())
def test_every_public_class_shows_its_usage(module_name: str) -> None:
    """Each class in a module's ``__all__`` has a ``Usage::`` example in its docstring, or in
    its module's when the module is about it. Exceptions and enums are exempt: raising or
    comparing one needs no example."""
    module = importlib.import_module(module_name)
    missing = []
    for name in getattr(module, "__all__", []):
        cls = getattr(module, name, None)
        if not inspect.isclass(cls) or cls.__module__ != module_name:
            continue  # not a class, or re-exported from where it is defined
        if issubclass(cls, (BaseException, enum.Enum)):
            continue
        if not (_USAGE.search(cls.__doc__ or "") or _USAGE.search(module.__doc__ or "")):
            missing.append(name)
    assert not missing, f"{module_name}: no Usage:: example for {', '.join(missing)}"
