"""Maya: the scene adapter over ``maya.cmds``, and ``start()`` for userSetup/shelf.

Usage (Maya's ``userSetup.py``; see hosts/maya in the repository)::

    import maya.utils
    from aurora_dcc.hosts import maya as aurora_maya
    maya.utils.executeDeferred(aurora_maya.start)     # once the UI is up, on the main thread

The host's peer name is ``maya-<version>`` (``maya-2025``). Selection changes
made in Maya are broadcast through a ``SelectionChanged`` scriptJob.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .qt_host import QtHost
from .scene import SceneAdapter, Unwatch, start_scene_host

__all__ = ["MayaScene", "start"]


class MayaScene(SceneAdapter):
    """The scene adapter for Maya (``maya.cmds``; main thread only).

    Usage::

        serve_scene(start_host(), MayaScene())
    """

    def __init__(self) -> None:
        from maya import cmds

        self.cmds: Any = cmds

    def host_name(self) -> str:
        return f"maya-{self.cmds.about(version=True)}"

    def scene_path(self) -> str:
        return str(self.cmds.file(query=True, sceneName=True) or "")

    def list_nodes(self, pattern: str) -> list[str]:
        # Maya's own wildcards (``*``, ``?``) match as fnmatch's do, and ls filters fast.
        return list(self.cmds.ls(pattern, long=False) or [])

    def exists(self, node: str) -> bool:
        return bool(self.cmds.objExists(node))

    def selection(self) -> list[str]:
        return list(self.cmds.ls(selection=True) or [])

    def select(self, nodes: list[str]) -> None:
        if nodes:
            self.cmds.select(nodes, replace=True)
        else:
            self.cmds.select(clear=True)

    def watch_selection(self, callback: Callable[[], None]) -> Optional[Unwatch]:
        job = self.cmds.scriptJob(event=["SelectionChanged", callback])
        return lambda: self.cmds.scriptJob(kill=job, force=True)


def start(name: Optional[str] = None, **options: Any) -> QtHost:
    """Start (once) Maya's aurora_dcc host serving the scene; returns it. Main thread only.

    ``options`` go to ``QtHost`` (``token``, ``peer_name``, ``export_env``).
    """
    return start_scene_host(MayaScene(), name, **options)
