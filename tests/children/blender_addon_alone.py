"""The add-on in a Blender (``bpy`` module) whose Python cannot import aurora_dcc.

Blocks ``aurora_dcc``, loads hosts/blender as the add-on package and runs its
``register()`` and ``unregister()``: both must return normally (Blender's
startup goes on) after one clear log line. Prints one JSON line.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any, Optional

ADDON = Path(__file__).resolve().parent.parent.parent / "hosts" / "blender"


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Optional[Any]:
        if name.split(".")[0] == "aurora_dcc":
            raise ImportError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, Block())

records: list[str] = []


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        records.append(f"{record.levelname}: {record.getMessage()}")


logging.getLogger().addHandler(Collect())

from bpy_module import bpy, remove_bpy_tmpdir  # noqa: E402

spec = importlib.util.spec_from_file_location(
    "aurora_dcc_blender", ADDON / "__init__.py", submodule_search_locations=[str(ADDON)]
)
assert spec is not None and spec.loader is not None
addon = importlib.util.module_from_spec(spec)
sys.modules["aurora_dcc_blender"] = addon
spec.loader.exec_module(addon)
addon.register()
panel = hasattr(bpy.types, "AURORA_PT_host")
addon.unregister()
print(json.dumps({"log": records, "panel": panel}), flush=True)
remove_bpy_tmpdir()
