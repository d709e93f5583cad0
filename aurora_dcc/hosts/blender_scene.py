"""Blender: the scene adapter over ``bpy.data`` / ``bpy.context``.

The nodes are the objects of the active view layer (what the user sees in
the outliner and can select), by name; patterns match them as everywhere
(fnmatch, case-sensitive). The host's peer name is ``blender-<version>``
(``blender-4.2.3``).

Selections made in Blender itself are heard through
``bpy.app.handlers.depsgraph_update_post`` (a selection tags the depsgraph)
and checked once per ``coalesce`` seconds at most, so dragging an object,
which updates the depsgraph on every mouse move, costs one comparison per
period and clients hear one ``selection.changed`` per real change.

Usage::

    from aurora_dcc.hosts.blender import start_host
    from aurora_dcc.hosts.scene_handlers import serve_scene
    host = start_host()
    serve_scene(host, BlenderScene(call_later=host.call_later))   # what blender.start() does
"""

from __future__ import annotations

import array
import fnmatch
from typing import Any, Callable, Optional

from ..errors import ErrorCode
from ..rpc.call_error import IpcCallError
from .points import point_rows
from .scene_handlers import SceneAdapter, Unwatch

__all__ = ["BlenderScene"]

CallLater = Callable[[float, Callable[[], None]], None]


class BlenderScene(SceneAdapter):
    """The scene adapter for Blender (``bpy``; main thread only).

    ``call_later(delay, fn)`` runs ``fn`` on the main thread after ``delay``
    seconds (the host's :meth:`~.blender.BlenderHost.call_later`): it
    coalesces the selection checks. Without it, each depsgraph update checks
    the selection at once.

    Usage::

        scene = BlenderScene(call_later=host.call_later)
        scene.list_nodes("Cube*")        # ['Cube', 'Cube.001']
    """

    def __init__(self, *, call_later: Optional[CallLater] = None, coalesce: float = 0.05) -> None:
        import bpy

        self.bpy: Any = bpy
        self.call_later = call_later
        self.coalesce = coalesce

    def _objects(self) -> Any:
        """The active view layer's objects (``LayerObjects``), new ones included."""
        objects = self.bpy.context.view_layer.objects
        # Blender 4+ syncs a layer with its collections lazily; reading ``active`` does it.
        _ = objects.active
        return objects

    def host_name(self) -> str:
        return f"blender-{self.bpy.app.version_string}"

    def scene_path(self) -> str:
        return str(self.bpy.data.filepath or "")

    def list_nodes(self, pattern: str) -> list[str]:
        names = (obj.name for obj in self._objects())
        if pattern == "*":
            return list(names)
        return [name for name in names if fnmatch.fnmatchcase(name, pattern)]

    def exists(self, node: str) -> bool:
        return self._objects().get(node) is not None

    def selection(self) -> list[str]:
        return sorted(obj.name for obj in self._objects().selected)

    def select(self, nodes: list[str]) -> None:
        objects = self._objects()
        for obj in objects.selected:
            obj.select_set(False)
        for name in nodes:
            objects[name].select_set(True)
        if nodes:
            objects.active = objects[nodes[-1]]  # Blender's rule: the last one selected is active

    def mesh_points(self, node: str) -> memoryview[float]:
        """``mesh.points``: the vertex positions of mesh object ``node``, float32, shape (n, 3).

        The mesh's own coordinates (object space, before modifiers), read with
        ``foreach_get`` straight into the array that is sent: one pass in C,
        no Python float per vertex. Refuses (-32602) a name that is no object
        or an object that is no mesh.
        """
        obj = self.bpy.data.objects.get(node) if isinstance(node, str) else None
        if obj is None:
            raise IpcCallError(ErrorCode.INVALID_PARAMS, f"no object named {node!r}")
        if obj.type != "MESH":
            raise IpcCallError(ErrorCode.INVALID_PARAMS, f"{node!r} is a {obj.type}, not a MESH")
        vertices = obj.data.vertices
        coordinates = array.array("f", bytes(12 * len(vertices)))  # 3 float32 zeros per vertex
        vertices.foreach_get("co", coordinates)
        return point_rows(coordinates)

    def watch_selection(self, callback: Callable[[], None]) -> Optional[Unwatch]:
        handlers = self.bpy.app.handlers
        scheduled = False

        def check() -> None:
            nonlocal scheduled
            scheduled = False
            callback()

        def on_update(*_args: Any) -> None:
            nonlocal scheduled
            if self.call_later is None:
                callback()
            elif not scheduled:
                scheduled = True
                self.call_later(self.coalesce, check)

        on_depsgraph_update = handlers.persistent(on_update)  # kept across file loads

        handlers.depsgraph_update_post.append(on_depsgraph_update)

        def unwatch() -> None:
            if on_depsgraph_update in handlers.depsgraph_update_post:
                handlers.depsgraph_update_post.remove(on_depsgraph_update)

        return unwatch
