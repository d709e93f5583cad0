"""``bpy`` imported with its session temp folder outside the test run's ``$TMPDIR``.

Blender makes that folder at import and the test run checks its ``$TMPDIR``
for leftovers, so the children that import ``bpy`` import it from here and
remove the folder when they end.

Usage (a script in tests/children)::

    from bpy_module import bpy, remove_bpy_tmpdir
    ...
    remove_bpy_tmpdir()
"""

from __future__ import annotations

import os
import shutil
import tempfile

_run_tmpdir = os.environ.get("TMPDIR")
_bpy_tmpdir = tempfile.mkdtemp(prefix="aurora-bpy-", dir="/tmp")
os.environ["TMPDIR"] = _bpy_tmpdir
import bpy  # noqa: E402

if _run_tmpdir is None:
    del os.environ["TMPDIR"]
else:
    os.environ["TMPDIR"] = _run_tmpdir

__all__ = ["bpy", "remove_bpy_tmpdir"]


def remove_bpy_tmpdir() -> None:
    """Remove the temp folder Blender made (at the child's end)."""
    shutil.rmtree(_bpy_tmpdir, ignore_errors=True)
