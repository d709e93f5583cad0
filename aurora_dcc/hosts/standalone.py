"""``StandaloneHost``: the embedded default host, a Qt application of its own.

It stands in for a DCC where none is installed: ``make demo`` runs it, tests
drive it, and tool authors develop against it. It serves a small in-memory
scene through the same handlers a DCC shim would offer, always on the Qt
main thread, and reports which thread ran each call so that the main-thread
guarantee can be seen.

Usage::

    host = StandaloneHost()                       # creates a QCoreApplication if none
    # another process: aurora-dcc --channel <host.name> call scene.create '{"type": "cube"}'
    host.app.exec()                               # or drive it with processEvents()

Handlers: ``scene.info``, ``scene.ls``, ``scene.create``, ``scene.select``
(broadcasts ``selection.changed``), ``host.main_thread`` (True when the call
ran on the main thread).
"""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any, Optional

from ..errors import ErrorCode
from ..peer import IpcCallError
from ..qt_compat import QtCore, app_instance, on_qt_main_thread
from .qt_host import QtHost

__all__ = ["StandaloneHost"]


class StandaloneHost(QtHost):
    """A ``QtHost`` with its own application and an in-memory scene."""

    def __init__(self, name: Optional[str] = None, **options: Any) -> None:
        self.app = app_instance() or QtCore.QCoreApplication(["aurora-standalone"])
        options.setdefault("peer_name", "standalone")
        super().__init__(name, **options)
        self.nodes: dict[str, str] = {}  # node name -> type
        self.selection: list[str] = []
        self._counter = itertools.count(1)
        self.register("scene.info", self.scene_info)
        self.register("scene.ls", self.scene_ls)
        self.register("scene.create", self.scene_create)
        self.register("scene.select", self.scene_select)
        self.register("host.main_thread", on_qt_main_thread)

    def scene_info(self) -> dict[str, Any]:
        return {"host": self.peer_name, "nodes": len(self.nodes), "selection": self.selection}

    def scene_ls(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self.nodes if fnmatch.fnmatchcase(n, pattern))

    def scene_create(self, type: str, name: Optional[str] = None) -> str:
        node = name or f"{type}{next(self._counter)}"
        if node in self.nodes:
            raise IpcCallError(ErrorCode.INVALID_PARAMS, f"a node named {node!r} exists already")
        self.nodes[node] = type
        self.emit("scene.changed", {"created": node, "type": type})
        return node

    def scene_select(self, nodes: list[str]) -> list[str]:
        missing = [n for n in nodes if n not in self.nodes]
        if missing:
            raise IpcCallError(ErrorCode.INVALID_PARAMS, f"no such node(s): {', '.join(missing)}")
        self.selection = list(nodes)
        self.emit("selection.changed", {"nodes": self.selection})
        return self.selection
