"""The scene handlers every host serves, without Qt: ``SceneAdapter`` and ``serve_scene``.

Each DCC shim (:mod:`.maya`, :mod:`.houdini`, :mod:`.nuke`, :mod:`.max3ds`,
:mod:`.blender_scene`, and the in-memory scene of :mod:`.standalone`) only
says how to ask its own API for a few things; :func:`serve_scene` turns that
into the same requests and events for every DCC (listed in :mod:`.scene`).
This module imports no Qt, so a host without Qt (Blender) serves the same
handlers; :mod:`.scene` re-exports these names and adds ``start_scene_host``
for the Qt hosts.

Usage::

    serve_scene(host, MemoryScene())      # host: a QtHost, a BlenderHost, ...
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, Protocol

from ..errors import ErrorCode
from ..rpc.call_error import IpcCallError
from ..rpc.registry import HandlerRegistry

__all__ = ["SceneAdapter", "SceneHost", "Unwatch", "scene_info", "serve_scene"]

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


class SceneHost(Protocol):
    """What :func:`serve_scene` needs from a host (``QtHost`` and ``BlenderHost`` have it).

    Usage::

        def serve_twice(host: SceneHost) -> None:
            serve_scene(host, MemoryScene())
    """

    @property
    def peer_name(self) -> str: ...

    @property
    def registry(self) -> HandlerRegistry: ...

    def emit(self, event: str, data: Any = None) -> None: ...

    def on_close(self, callback: Callable[[], None]) -> None: ...


class _SceneHandlers:
    """The handlers of one host over one adapter, and its selection broadcasts."""

    def __init__(self, host: SceneHost, adapter: SceneAdapter) -> None:
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


def serve_scene(host: SceneHost, adapter: SceneAdapter) -> None:
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
