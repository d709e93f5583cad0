"""Fake ``nuke`` following the documented signatures, main thread only.

Nodes have full names (``Group1.Blur2`` is inside ``Group1``); ``allNodes()``
lists the top level unless ``recurseGroups=True``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from fake_main_thread import api_call, later

NUKE_VERSION_STRING = "15.1v2"
SCRIPT = "/projects/shot010/comp/shot010_comp_v003.nk"
NAMES = ["Read1", "Blur1", "Merge1", "Write1", "Group1", "Group1.Blur2"]

_selected: list[str] = []


class Node:
    def __init__(self, full_name: str) -> None:
        self._full_name = full_name

    def name(self) -> str:
        api_call("nuke.Node.name")
        return self._full_name.rsplit(".", 1)[-1]

    def fullName(self) -> str:
        api_call("nuke.Node.fullName")
        return self._full_name

    def isSelected(self) -> bool:
        api_call("nuke.Node.isSelected")
        return self._full_name in _selected

    def setSelected(self, selected: bool) -> None:
        api_call("nuke.Node.setSelected")
        if selected and self._full_name not in _selected:
            _selected.append(self._full_name)
        elif not selected and self._full_name in _selected:
            _selected.remove(self._full_name)


class _Root:
    def name(self) -> str:
        api_call("nuke.Root.name")
        return SCRIPT


def root() -> _Root:
    api_call("nuke.root")
    return _Root()


def allNodes(
    filter: Optional[str] = None, group: Any = None, recurseGroups: bool = False
) -> list[Node]:
    api_call("nuke.allNodes")
    return [Node(n) for n in NAMES if recurseGroups or "." not in n]


def selectedNodes(filter: Optional[str] = None) -> list[Node]:
    api_call("nuke.selectedNodes")
    return [Node(n) for n in _selected if "." not in n]  # the root's context only


def toNode(name: str) -> Optional[Node]:
    api_call("nuke.toNode")
    return Node(name) if name in NAMES else None


def executeInMainThread(
    fn: Callable[..., Any], args: Any = (), kwargs: Optional[dict[str, Any]] = None
) -> None:  # any thread, as in Nuke
    later(fn, *(args if isinstance(args, tuple) else (args,)), **(kwargs or {}))
