"""3ds Max: the scene adapter over ``pymxs``, and ``start()`` for a startup script.

Usage (a ``.py`` in ``<3ds Max>/scripts/startup/``; see hosts/3dsmax in the
repository)::

    from aurora_dcc.hosts import max3ds
    max3ds.start()

The host's peer name is ``3dsmax-<year>`` (``3dsmax-2024``). Selection
changes made in Max are broadcast through a ``#selectionSetChanged`` general
callback, which takes a Python function from 3ds Max 2021 on; where that
fails, only ``scene.select`` announces them.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any, Callable, Optional

from .qt_host import QtHost
from .scene import SceneAdapter, Unwatch, start_scene_host

__all__ = ["MaxScene", "start"]

log = logging.getLogger(__name__)

_CALLBACK_ID = "aurora_dcc"


def product_year(release: int) -> int:
    """3ds Max's product year from ``maxVersion()[0]``: 26000 -> 2024 (since 12000, 2010)."""
    return release // 1000 + 1998


class MaxScene(SceneAdapter):
    """The scene adapter for 3ds Max (``pymxs.runtime``; main thread only).

    Usage::

        serve_scene(start_host(), MaxScene())
    """

    def __init__(self) -> None:
        from pymxs import runtime

        self.rt: Any = runtime

    def host_name(self) -> str:
        return f"3dsmax-{product_year(int(self.rt.maxVersion()[0]))}"

    def scene_path(self) -> str:
        file_name = str(self.rt.maxFileName)
        # maxFilePath ends with a separator; both are "" while untitled.
        return str(self.rt.maxFilePath) + file_name if file_name else ""

    def list_nodes(self, pattern: str) -> list[str]:
        names = (str(node.name) for node in self.rt.objects)
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def exists(self, node: str) -> bool:
        return self.rt.getNodeByName(node) is not None

    def selection(self) -> list[str]:
        return [str(node.name) for node in self.rt.selection]

    def select(self, nodes: list[str]) -> None:
        if nodes:
            self.rt.select([self.rt.getNodeByName(name) for name in nodes])
        else:
            self.rt.clearSelection()

    def watch_selection(self, callback: Callable[[], None]) -> Optional[Unwatch]:
        rt = self.rt
        event, callback_id = rt.Name("selectionSetChanged"), rt.Name(_CALLBACK_ID)

        def on_selection() -> None:  # callbacks.addScript takes functions without parameters
            callback()

        try:
            rt.callbacks.addScript(event, on_selection, id=callback_id)
        except Exception:  # 3ds Max before 2021 takes script strings only
            log.warning("3ds Max: no selection callback; only scene.select is announced")
            return None
        return lambda: rt.callbacks.removeScripts(event, id=callback_id)


def start(name: Optional[str] = None, **options: Any) -> QtHost:
    """Start (once) 3ds Max's aurora_dcc host serving the scene; returns it. Main thread only.

    ``options`` go to ``QtHost`` (``token``, ``peer_name``, ``export_env``).
    """
    return start_scene_host(MaxScene(), name, **options)
