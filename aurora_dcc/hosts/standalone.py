"""``StandaloneHost``: the embedded default host, a Qt application of its own.

It stands in for a DCC where none is installed: ``make demo`` runs it, tests
drive it, and tool authors develop against it. It serves a small in-memory
scene (``MemoryScene``) through the same scene handlers a DCC shim serves
(:func:`.scene.serve_scene`), always on the Qt main thread, and reports
which thread ran each call so that the main-thread guarantee can be seen.

Usage::

    host = StandaloneHost()                       # creates a QCoreApplication if none
    # another process: aurora-dcc --channel <host.name> call scene.create '{"type": "cube"}'
    host.app.exec()                               # or drive it with processEvents()

Handlers: ``scene.info``, ``scene.ls``, ``scene.select`` (broadcasts
``selection.changed``) as every DCC host serves them, plus ``scene.create``
(broadcasts ``scene.changed``), ``host.main_thread`` (True when the call
ran on the main thread) and ``mesh.points`` (``{"count", "seed"}``: sample
points as a float32 buffer of shape (count, 3), see :mod:`.points`).
"""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any, Optional

from ..errors import ErrorCode
from ..qt.compat import QtCore, app_instance, on_qt_main_thread
from ..rpc.call_error import IpcCallError
from .points import random_points
from .qt_host import QtHost
from .scene import SceneAdapter, scene_info, serve_scene

__all__ = ["MemoryScene", "StandaloneHost"]


class MemoryScene(SceneAdapter):
    """A scene held in a dict: node name -> type.

    Usage::

        scene = MemoryScene()
        scene.create("cube")          # 'cube1'
        scene.list_nodes("c*")        # ['cube1']
    """

    def __init__(self, name: str = "standalone") -> None:
        self.name = name
        self.nodes: dict[str, str] = {}
        self.selected: list[str] = []
        self._counter = itertools.count(1)

    def host_name(self) -> str:
        return self.name

    def scene_path(self) -> str:
        return ""

    def list_nodes(self, pattern: str) -> list[str]:
        return sorted(n for n in self.nodes if fnmatch.fnmatchcase(n, pattern))

    def exists(self, node: str) -> bool:
        return node in self.nodes

    def selection(self) -> list[str]:
        return list(self.selected)

    def select(self, nodes: list[str]) -> None:
        self.selected = list(nodes)

    def create(self, type: str, name: Optional[str] = None) -> str:
        """Add a node (named ``<type><n>`` unless ``name``); refuses a name in use."""
        node = name or f"{type}{next(self._counter)}"
        if node in self.nodes:
            raise IpcCallError(ErrorCode.INVALID_PARAMS, f"a node named {node!r} exists already")
        self.nodes[node] = type
        return node


class StandaloneHost(QtHost):
    """A ``QtHost`` with its own application and an in-memory scene (``self.scene``).

    Usage::

        host = StandaloneHost()                   # its own QCoreApplication if none exists
        print(host.name)                          # the channel clients connect to
        host.app.exec()                           # serve until the application quits
    """

    def __init__(self, name: Optional[str] = None, **options: Any) -> None:
        self.app = app_instance() or QtCore.QCoreApplication(["aurora-standalone"])
        self.scene = MemoryScene(options.setdefault("peer_name", "standalone"))
        super().__init__(name, **options)
        serve_scene(self, self.scene)
        self.register("scene.create", self.scene_create)
        self.register("host.main_thread", on_qt_main_thread)
        self.register("mesh.points", random_points)

    def scene_info(self) -> dict[str, Any]:
        return scene_info(self.scene)

    def scene_create(self, type: str, name: Optional[str] = None) -> str:
        node = self.scene.create(type, name)
        self.emit("scene.changed", {"created": node, "type": type})
        return node
