"""aurora_dcc for Blender: serve Blender's scene to external tools over a local socket.

The add-on is thin: ``register()`` starts the process's aurora_dcc host
(``aurora_dcc.hosts.blender.start``) and adds a sidebar panel (3D Viewport >
Sidebar > Aurora) that shows the channel name and the number of connected
clients, with a button to stop or start the host; ``unregister()`` stops the
host it started and removes the panel. Blender calls ``unregister()`` when it
quits, so the socket file goes with it.

One package for both kinds of install: a Blender 4.2+ extension
(``blender_manifest.toml``: Blender installs the aurora_dcc wheel listed
there) and a legacy add-on for Blender 3.x (``bl_info``; the zip's
``wheels/`` folder is put on ``sys.path`` when aurora_dcc is not installed).
``make blender-addon`` builds the zip; hosts/README.md says how to install it.

The channel name is ``$AURORA_DCC_BLENDER_CHANNEL`` when set, else
``auroraview_<pid>``.

Usage (what Blender does on enable / disable)::

    import aurora_dcc_blender
    aurora_dcc_blender.register()        # host started, panel added
    aurora_dcc_blender.unregister()      # host stopped, panel removed
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import bpy

bl_info = {
    "name": "aurora_dcc",
    "author": "aurora_dcc developers",
    "version": (0, 1, 0),
    "blender": (3, 0, 0),
    "location": "3D Viewport > Sidebar > Aurora",
    "description": "Serve Blender's scene to external tools over aurora_dcc's local socket",
    "category": "System",
}

ENV_NAME = "AURORA_DCC_BLENDER_CHANNEL"

log = logging.getLogger(__name__)

_host_module: Any = None  # aurora_dcc.hosts.blender, once imported
_started_here = False  # stop on unregister only a host this add-on started


def _import_host_module() -> Any:
    """``aurora_dcc.hosts.blender``; from the zip's wheel when aurora_dcc is not installed."""
    try:
        from aurora_dcc.hosts import blender as host_module
    except ImportError:
        wheels = sorted(Path(__file__).resolve().parent.glob("wheels/aurora_dcc-*.whl"))
        if not wheels:
            raise
        sys.path.append(str(wheels[-1]))  # a pure-Python wheel imports from its zip
        from aurora_dcc.hosts import blender as host_module
    return host_module


def _current_host() -> Any:
    return None if _host_module is None else _host_module.current_host()


def _redraw_panels(_clients: int = 0) -> None:
    """Redraw the 3D Viewports (the panel shows the client count)."""
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def start_host() -> Optional[Any]:
    """Start the host (idempotent); None, logged, when it cannot start."""
    global _started_here
    if _host_module is None:
        return None
    running = _host_module.current_host()
    try:
        host = _host_module.start(os.environ.get(ENV_NAME) or None)
    except Exception as exc:  # one line in Blender's console; Blender goes on
        log.error("aurora_dcc: the Blender host did not start: %s: %s", type(exc).__name__, exc)
        return None
    if running is None:
        _started_here = True
        host.on_clients_changed(_redraw_panels)
    return host


def stop_host() -> None:
    global _started_here
    _started_here = False
    if _host_module is not None:
        _host_module.stop_host()


class AURORA_OT_host_start(bpy.types.Operator):
    """Start serving Blender's scene to external tools"""

    bl_idname = "aurora_dcc.host_start"
    bl_label = "Start"

    def execute(self, context: Any) -> Any:
        if start_host() is None:
            self.report({"ERROR"}, "aurora_dcc host did not start (see the console)")
            return {"CANCELLED"}
        _redraw_panels()
        return {"FINISHED"}


class AURORA_OT_host_stop(bpy.types.Operator):
    """Stop the host: clients are disconnected"""

    bl_idname = "aurora_dcc.host_stop"
    bl_label = "Stop"

    def execute(self, context: Any) -> Any:
        stop_host()
        _redraw_panels()
        return {"FINISHED"}


class AURORA_PT_host(bpy.types.Panel):
    """The sidebar panel: channel, clients, start/stop."""

    bl_label = "aurora_dcc"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Aurora"

    def draw(self, context: Any) -> None:
        layout = self.layout
        host = _current_host()
        if host is None:
            layout.label(text="Host stopped", icon="UNLINKED")
            layout.operator(AURORA_OT_host_start.bl_idname, icon="PLAY")
            return
        column = layout.column(align=True)
        column.label(text=f"Channel: {host.name}", icon="LINKED")
        column.label(text=f"Clients: {host.client_count}")
        layout.operator(AURORA_OT_host_stop.bl_idname, icon="PAUSE")


_classes = (AURORA_OT_host_start, AURORA_OT_host_stop, AURORA_PT_host)


def register() -> None:
    global _host_module
    try:
        _host_module = _import_host_module()
    except Exception as exc:  # never break Blender's startup
        log.error("aurora_dcc add-on: cannot import aurora_dcc (%s); the host is not started", exc)
        return
    for cls in _classes:
        bpy.utils.register_class(cls)
    start_host()


def unregister() -> None:
    global _host_module
    if _host_module is None:
        return  # register() found no aurora_dcc
    if _started_here:
        stop_host()
    for cls in reversed(_classes):
        bpy.utils.unregister_class(cls)
    _host_module = None
