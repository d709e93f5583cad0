"""Fake ``hou`` following the documented signatures, main thread only.

Nodes are ``hou.Node`` objects named by path. Selection callbacks
(``hou.ui.addSelectionCallback``) run at once on every selection change, with
the selected nodes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from fake_main_thread import api_call

VERSION = "20.5.332"
HIP = "/projects/shot010/layout.hip"
PATHS = ["/obj", "/obj/geo1", "/obj/geo1/box1", "/obj/cam1", "/out", "/out/mantra1"]

_selected: list[str] = []
_callbacks: list[Callable[[Any], None]] = []


class Node:
    def __init__(self, path: str) -> None:
        self._path = path

    def path(self) -> str:
        api_call("hou.Node.path")
        return self._path

    def name(self) -> str:
        api_call("hou.Node.name")
        return self._path.rsplit("/", 1)[-1]

    def allSubChildren(self) -> tuple[Node, ...]:
        api_call("hou.Node.allSubChildren")
        prefix = self._path.rstrip("/") + "/"
        return tuple(Node(p) for p in PATHS if p.startswith(prefix))

    def isSelected(self) -> bool:
        api_call("hou.Node.isSelected")
        return self._path in _selected

    def setSelected(self, on: bool, clear_all_selected: bool = False) -> None:
        api_call("hou.Node.setSelected")
        if clear_all_selected:
            _selected.clear()
        if on and self._path not in _selected:
            _selected.append(self._path)
        elif not on and self._path in _selected:
            _selected.remove(self._path)
        _selection_changed()


class _HipFile:
    def path(self) -> str:
        api_call("hou.hipFile.path")
        return HIP


class _UI:
    def addSelectionCallback(self, callback: Callable[[Any], None]) -> None:
        api_call("hou.ui.addSelectionCallback")
        _callbacks.append(callback)

    def removeSelectionCallback(self, callback: Callable[[Any], None]) -> None:
        api_call("hou.ui.removeSelectionCallback")
        _callbacks.remove(callback)

    def selectionCallbacks(self) -> tuple[Callable[[Any], None], ...]:
        api_call("hou.ui.selectionCallbacks")
        return tuple(_callbacks)


hipFile = _HipFile()
ui = _UI()


def isUIAvailable() -> bool:
    api_call("hou.isUIAvailable")
    return True


def applicationVersionString() -> str:
    api_call("hou.applicationVersionString")
    return VERSION


def node(path: str) -> Optional[Node]:
    api_call("hou.node")
    return Node(path) if path == "/" or path in PATHS else None


def selectedNodes() -> tuple[Node, ...]:
    api_call("hou.selectedNodes")
    return tuple(Node(p) for p in _selected)


def clearAllSelected() -> None:
    api_call("hou.clearAllSelected")
    _selected.clear()
    _selection_changed()


def _selection_changed() -> None:
    for callback in list(_callbacks):
        callback([Node(p) for p in _selected])
