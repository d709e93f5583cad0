"""Houdini: the scene adapter over ``hou``, and ``start()`` for startup scripts.

Usage (``scripts/python/uiready.py`` on ``HOUDINI_PATH``; see hosts/houdini in
the repository)::

    import hdefereval
    from aurora_dcc.hosts import houdini as aurora_houdini
    hdefereval.executeDeferred(aurora_houdini.start)

Nodes are named by their paths (``/obj/geo1``). The host's peer name is
``houdini-<version>`` (``houdini-20.5.332``). Selection changes made in
Houdini are broadcast through ``hou.ui.addSelectionCallback`` where the
session has a UI (graphical Houdini 20+); elsewhere only ``scene.select``
announces them.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, Optional

from .qt_host import QtHost
from .scene import SceneAdapter, Unwatch, start_scene_host

__all__ = ["HoudiniScene", "start"]


class HoudiniScene(SceneAdapter):
    """The scene adapter for Houdini (``hou``; main thread only).

    Usage::

        serve_scene(start_host(), HoudiniScene())
    """

    def __init__(self) -> None:
        import hou

        self.hou: Any = hou

    def host_name(self) -> str:
        return f"houdini-{self.hou.applicationVersionString()}"

    def scene_path(self) -> str:
        return str(self.hou.hipFile.path())

    def list_nodes(self, pattern: str) -> list[str]:
        paths = (node.path() for node in self.hou.node("/").allSubChildren())
        return [p for p in paths if fnmatch.fnmatchcase(p, pattern)]

    def exists(self, node: str) -> bool:
        return node.startswith("/") and self.hou.node(node) is not None

    def selection(self) -> list[str]:
        return [node.path() for node in self.hou.selectedNodes()]

    def select(self, nodes: list[str]) -> None:
        self.hou.clearAllSelected()
        for path in nodes:
            self.hou.node(path).setSelected(True, clear_all_selected=False)

    def watch_selection(self, callback: Callable[[], None]) -> Optional[Unwatch]:
        ui: Any = getattr(self.hou, "ui", None)
        if not self.hou.isUIAvailable() or not hasattr(ui, "addSelectionCallback"):
            return None  # no UI (hython), or Houdini before 20

        def on_selection(selection: Any) -> None:  # Houdini passes the selected items
            callback()

        ui.addSelectionCallback(on_selection)
        return lambda: ui.removeSelectionCallback(on_selection)


def start(name: Optional[str] = None, **options: Any) -> QtHost:
    """Start (once) Houdini's aurora_dcc host serving the scene; returns it. Main thread only.

    ``options`` go to ``QtHost`` (``token``, ``peer_name``, ``export_env``).
    """
    return start_scene_host(HoudiniScene(), name, **options)
