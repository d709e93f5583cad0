"""The scene handlers every DCC host serves, over a small per-DCC ``SceneAdapter``.

Each DCC shim (:mod:`.maya`, :mod:`.houdini`, :mod:`.nuke`, :mod:`.max3ds`, and
the in-memory scene of :mod:`.standalone`) only says how to ask its own API
for a few things; :func:`serve_scene` turns that into the same requests and
events for every DCC:

- ``scene.info`` -> ``{"host", "scene", "nodes", "selection"}``
- ``scene.ls(pattern="*")`` -> sorted node names matching an fnmatch pattern
- ``scene.select(nodes)`` -> the new selection; unknown nodes are refused with
  -32602 (INVALID_PARAMS) and ``{"missing": [...]}`` before anything changes
- event ``selection.changed`` ``{"nodes": [...]}`` after every ``scene.select``,
  and when the user changes the selection in the DCC (where the adapter can
  hear it: ``watch_selection``)

Every adapter method runs on the host's main thread: requests arrive through
the ``QtHost``'s event loop and DCC callbacks fire there.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional

from ..errors import ErrorCode
from ..qt.compat import on_qt_main_thread
from ..rpc.peer import IpcCallError
from .qt_host import QtHost, current_host, start_host

__all__ = ["SceneAdapter", "scene_info", "serve_scene", "start_scene_host"]

log = logging.getLogger(__name__)

Unwatch = Callable[[], None]


class SceneAdapter(ABC):
    """What the scene handlers need from one DCC's Python API (main thread only).

    Usage::

        class MayaScene(SceneAdapter):
            def host_name(self):
                return f"maya-{cmds.about(version=True)}"
            ...

        serve_scene(start_host(export_env=False), MayaScene())
    """

    @abstractmethod
    def host_name(self) -> str:
        """The DCC and its version, e.g. ``"maya-2025"``: the host's peer name."""

    @abstractmethod
    def scene_path(self) -> str:
        """The open scene file, ``""`` while untitled."""

    @abstractmethod
    def list_nodes(self, pattern: str) -> list[str]:
        """Names of the nodes matching ``pattern`` (fnmatch style; ``"*"``: all)."""

    @abstractmethod
    def exists(self, node: str) -> bool:
        """Whether ``node`` (a name as ``list_nodes`` gives it) exists."""

    @abstractmethod
    def selection(self) -> list[str]:
        """Names of the selected nodes."""

    @abstractmethod
    def select(self, nodes: list[str]) -> None:
        """Make ``nodes`` the selection (all exist: checked before); ``[]`` clears it."""

    def watch_selection(self, callback: Callable[[], None]) -> Optional[Unwatch]:
        """Call ``callback()`` when the user changes the selection; returns how to stop.

        None (the default) where the DCC offers no cheap notification: clients
        then hear only the selections made through ``scene.select``.
        """
        return None


def scene_info(adapter: SceneAdapter) -> dict[str, Any]:
    """What ``scene.info`` answers: host name, scene file, node count, selection."""
    return {
        "host": adapter.host_name(),
        "scene": adapter.scene_path(),
        "nodes": len(adapter.list_nodes("*")),
        "selection": adapter.selection(),
    }


class _SceneHandlers:
    """The handlers of one host over one adapter, and its selection broadcasts."""

    def __init__(self, host: QtHost, adapter: SceneAdapter) -> None:
        self.host = host
        self.adapter = adapter
        self._selecting = False
        self._last_sent: Optional[list[str]] = None

    def info(self) -> dict[str, Any]:
        return scene_info(self.adapter)

    def ls(self, pattern: str = "*") -> list[str]:
        if not isinstance(pattern, str):
            raise IpcCallError(ErrorCode.INVALID_PARAMS, "pattern must be a string")
        return sorted(self.adapter.list_nodes(pattern))

    def select(self, nodes: list[str]) -> list[str]:
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise IpcCallError(ErrorCode.INVALID_PARAMS, "nodes must be a list of node names")
        missing = [n for n in nodes if not self.adapter.exists(n)]
        if missing:
            raise IpcCallError(
                ErrorCode.INVALID_PARAMS,
                f"no such node(s): {', '.join(missing)}",
                {"missing": missing},
            )
        # The DCC's own notification may fire inside select(): one event is sent, after it.
        self._selecting = True
        try:
            self.adapter.select(nodes)
        finally:
            self._selecting = False
        return self._send(self.adapter.selection())

    def selection_changed(self) -> None:
        """The DCC's callback: broadcast a selection that differs from the last one sent."""
        if self._selecting:
            return
        try:
            selection = self.adapter.selection()
            if selection != self._last_sent:
                self._send(selection)
        except Exception:  # never raise into the DCC's callback machinery
            log.exception("%s: selection.changed not sent", self.host.peer_name)

    def _send(self, selection: list[str]) -> list[str]:
        self._last_sent = selection
        self.host.emit("selection.changed", {"nodes": selection})
        return selection


def serve_scene(host: QtHost, adapter: SceneAdapter) -> None:
    """Serve ``scene.info``, ``scene.ls``, ``scene.select`` on ``host`` through ``adapter``.

    Also hooks the DCC's selection notification (``adapter.watch_selection``)
    until the host closes. Call it on the main thread.
    """
    handlers = _SceneHandlers(host, adapter)
    host.registry.update(
        {"scene.info": handlers.info, "scene.ls": handlers.ls, "scene.select": handlers.select}
    )
    unwatch = adapter.watch_selection(handlers.selection_changed)
    if unwatch is not None:
        host.on_close(unwatch)


def start_scene_host(adapter: SceneAdapter, name: Optional[str] = None, **options: Any) -> QtHost:
    """The process's host (``start_host``), serving ``adapter``'s scene; idempotent.

    The peer name defaults to ``adapter.host_name()``. A host already running
    is returned as it is, given the scene handlers if it has none yet. Must
    be called on the Qt main thread (DCC APIs and the server live there).
    """
    if not on_qt_main_thread():
        raise RuntimeError(
            "start the aurora_dcc host on the Qt main thread (not on this thread, or before the"
            " QApplication exists)"
        )
    host = current_host()
    if host is None:
        options.setdefault("peer_name", adapter.host_name())
        host = start_host(name, **options)
    if "scene.info" not in host.registry:
        serve_scene(host, adapter)
    return host
