"""The runtime package imports on Python 3.9, the oldest Python a supported DCC ships.

``make py39`` (vermin, part of ``make test``) checks every file for syntax and
standard-library API newer than 3.9 without running it. This test adds what a
static check cannot see: it compiles every module with a real Python 3.9 and
imports each one there (a ``X | Y`` evaluated at import, a decorator option
3.9 lacks). Modules that need what that interpreter may not have installed
(``qtpy`` and a Qt binding, ``orjson``, ``bpy``) are left out of the import,
not of the compile. Skipped, saying so, where no Python 3.9 is found:
``python3.9`` on ``PATH``, ``AURORA_PYTHON39``, or a pyenv 3.9.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = ["qtpy", "PySide6", "PySide2", "shiboken6", "shiboken2", "orjson", "bpy", "numpy"]

CHECK = """
import compileall, importlib, json, pkgutil, sys
sys.path.insert(0, ".")
optional = set(sys.argv[1].split(","))
ok = compileall.compile_dir("aurora_dcc", quiet=1, force=True, legacy=False, optimize=0)
import aurora_dcc
imported, left_out, failed = [], [], {}
for info in pkgutil.walk_packages(aurora_dcc.__path__, "aurora_dcc."):
    if info.name.endswith(".__main__"):  # runs the command line
        continue
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in optional:
            left_out.append(info.name)
        else:
            failed[info.name] = repr(exc)
    except Exception as exc:
        failed[info.name] = repr(exc)
    else:
        imported.append(info.name)
print(json.dumps({"compiled": bool(ok), "imported": imported, "left_out": left_out,
                  "failed": failed, "version": list(sys.version_info[:2])}))
"""


def _python39() -> Optional[str]:
    """The first Python 3.9 that runs (a pyenv shim on PATH may not)."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [os.environ.get("AURORA_PYTHON39"), shutil.which("python3.9")]
    candidates += sorted(glob.glob(os.path.join(pyenv, "versions", "3.9*", "bin", "python3.9")))
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.stdout.strip() == "True":
            return candidate
    return None


PYTHON39 = _python39()


@pytest.mark.subprocess
@pytest.mark.skipif(
    PYTHON39 is None,
    reason="no Python 3.9 here (python3.9 on PATH, AURORA_PYTHON39, or pyenv); "
    "`make py39` still checks the source",
)
def test_every_module_compiles_and_imports_on_python_39(tmp_path: Path) -> None:
    assert PYTHON39 is not None
    work = tmp_path / "copy"  # compiling writes __pycache__: not into the repository
    shutil.copytree(ROOT / "aurora_dcc", work / "aurora_dcc")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AURORAVIEW_"))}
    env["PYTHONNOUSERSITE"] = "1"
    proc = subprocess.run(
        [PYTHON39, "-I", "-c", CHECK, ",".join(OPTIONAL)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["version"] == [3, 9]
    assert report["compiled"], proc.stdout[-4000:]
    assert report["failed"] == {}
    assert "aurora_dcc.rpc.peer" in report["imported"]  # the Qt-free core really ran
