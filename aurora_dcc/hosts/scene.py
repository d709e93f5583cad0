"""The scene handlers every DCC host serves, over a small per-DCC ``SceneAdapter``.

Each DCC shim (:mod:`.maya`, :mod:`.houdini`, :mod:`.nuke`, :mod:`.max3ds`,
:mod:`.blender_scene`, and the in-memory scene of :mod:`.standalone`) only
says how to ask its own API for a few things; :func:`serve_scene` turns that
into the same requests and events for every DCC:

- ``scene.info`` -> ``{"host", "scene", "nodes", "selection"}``
- ``scene.ls(pattern="*")`` -> sorted node names matching an fnmatch pattern
- ``scene.select(nodes)`` -> the new selection; unknown nodes are refused with
  -32602 (INVALID_PARAMS) and ``{"missing": [...]}`` before anything changes
- event ``selection.changed`` ``{"nodes": [...]}`` after every ``scene.select``,
  and when the user changes the selection in the DCC (where the adapter can
  hear it: ``watch_selection``)

Every adapter method runs on the host's main thread: requests arrive through
the ``QtHost``'s event loop and DCC callbacks fire there. The Qt-free part
(``SceneAdapter``, ``serve_scene``, ``scene_info``) lives in
:mod:`.scene_handlers`, shared with the Blender host; this module re-exports
it and adds ``start_scene_host`` for the Qt hosts.
"""

from __future__ import annotations

from typing import Any, Optional

from ..qt.compat import on_qt_main_thread
from .qt_host import QtHost, current_host, start_host
from .scene_handlers import SceneAdapter, Unwatch, scene_info, serve_scene

__all__ = ["SceneAdapter", "Unwatch", "scene_info", "serve_scene", "start_scene_host"]


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
    if current_host() is None:
        options.setdefault("peer_name", adapter.host_name())
    host = start_host(name, **options)  # a running host: refuses other settings
    if "scene.info" not in host.registry:
        serve_scene(host, adapter)
    return host
