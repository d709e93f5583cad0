"""Nuke: the scene adapter over ``nuke``, and ``start()`` for ``menu.py``.

Usage (``~/.nuke/menu.py``; see hosts/nuke in the repository)::

    import nuke
    from aurora_dcc.hosts import nuke as aurora_nuke
    nuke.executeInMainThread(aurora_nuke.start)

Nodes are named by their full names (``Group1.Blur2`` inside a group). The
host's peer name is ``nuke-<version>`` (``nuke-15.1v2``). Nuke has no cheap
selection-changed notification (only per-knob ``knobChanged`` callbacks), so
clients hear the selections made through ``scene.select`` only.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Optional

from .qt_host import QtHost
from .scene import SceneAdapter, start_scene_host

__all__ = ["NukeScene", "start"]


class NukeScene(SceneAdapter):
    """The scene adapter for Nuke (``nuke``; main thread only).

    Usage::

        serve_scene(start_host(), NukeScene())
    """

    def __init__(self) -> None:
        import nuke

        self.nuke: Any = nuke

    def host_name(self) -> str:
        return f"nuke-{self.nuke.NUKE_VERSION_STRING}"

    def scene_path(self) -> str:
        name = str(self.nuke.root().name())
        return "" if name == "Root" else name  # an untitled script's root is named "Root"

    def _all_nodes(self) -> list[Any]:
        return list(self.nuke.allNodes(recurseGroups=True))

    def list_nodes(self, pattern: str) -> list[str]:
        names = (node.fullName() for node in self._all_nodes())
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def exists(self, node: str) -> bool:
        return self.nuke.toNode(node) is not None

    # nuke.selectedNodes() sees only the current group; these see inside groups too.
    def selection(self) -> list[str]:
        return [node.fullName() for node in self._all_nodes() if node.isSelected()]

    def select(self, nodes: list[str]) -> None:
        wanted = set(nodes)
        for node in self._all_nodes():
            node.setSelected(node.fullName() in wanted)


def start(name: Optional[str] = None, **options: Any) -> QtHost:
    """Start (once) Nuke's aurora_dcc host serving the script; returns it. Main thread only.

    ``options`` go to ``QtHost`` (``token``, ``peer_name``, ``export_env``).
    """
    return start_scene_host(NukeScene(), name, **options)
