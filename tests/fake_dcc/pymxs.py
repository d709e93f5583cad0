"""Fake ``pymxs`` (``pymxs.runtime``) following the documented API, main thread only.

``maxVersion()``'s first item is the release (26000: 3ds Max 2024);
``getNodeByName`` gives None for ``undefined``; ``select`` replaces the
selection; ``#selectionSetChanged`` general callbacks run at once after a
change. ``callbacks.addScript`` refuses functions that take parameters, as
MAXScript does.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from fake_main_thread import api_call

RELEASE = 26000
FILE_PATH = "C:\\projects\\shot010\\scenes\\"
FILE_NAME = "layout_v012.max"
NAMES = ["Box001", "Sphere001", "Camera001", "Camera001.Target"]


class _Name:
    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Name) and other.value.lower() == self.value.lower()

    def __hash__(self) -> int:
        return hash(self.value.lower())


class _Node:
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        api_call("node.name")
        return self._name


class _Callbacks:
    def __init__(self) -> None:
        self.scripts: list[tuple[_Name, Callable[[], Any], Optional[_Name]]] = []

    def addScript(
        self, event: _Name, fn: Callable[[], Any], id: Optional[_Name] = None, persistent=False
    ) -> None:
        api_call("callbacks.addScript")
        required = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
        if required or persistent:
            raise RuntimeError("addScript: a callback function takes no parameters, not persistent")
        self.scripts.append((event, fn, id))

    def removeScripts(self, event: Optional[_Name] = None, id: Optional[_Name] = None) -> None:
        api_call("callbacks.removeScripts")

        def matches(script: tuple[_Name, Callable[[], Any], Optional[_Name]]) -> bool:
            return (event is None or script[0] == event) and (id is None or script[2] == id)

        self.scripts = [s for s in self.scripts if not matches(s)]

    def fire(self, event: str) -> None:
        for registered, fn, _id in list(self.scripts):
            if registered == _Name(event):
                fn()


class _Runtime:
    def __init__(self) -> None:
        self.callbacks = _Callbacks()
        self._selected: list[str] = []

    def Name(self, value: str) -> _Name:
        return _Name(value)

    def maxVersion(self) -> list[Any]:
        api_call("maxVersion")
        return [RELEASE, 56, 0, 26, 0, 0, 2000, 2024, ".0 Update"]

    @property
    def maxFilePath(self) -> str:
        api_call("maxFilePath")
        return FILE_PATH

    @property
    def maxFileName(self) -> str:
        api_call("maxFileName")
        return FILE_NAME

    @property
    def objects(self) -> list[_Node]:
        api_call("objects")
        return [_Node(n) for n in NAMES]

    @property
    def selection(self) -> list[_Node]:
        api_call("selection")
        return [_Node(n) for n in self._selected]

    def getNodeByName(self, name: str) -> Optional[_Node]:
        api_call("getNodeByName")
        return _Node(name) if name in NAMES else None

    def select(self, nodes: Any) -> None:
        api_call("select")
        nodes = nodes if isinstance(nodes, list) else [nodes]
        self._set_selection([node._name for node in nodes])

    def clearSelection(self) -> None:
        api_call("clearSelection")
        self._set_selection([])

    def _set_selection(self, names: list[str]) -> None:
        if names != self._selected:
            self._selected = names
            self.callbacks.fire("selectionSetChanged")


runtime = _Runtime()
