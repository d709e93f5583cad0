"""A Blender host in module mode (``import bpy``), pumped on this process's main thread.

Usage: ``blender_module_host.py <channel> [--addon]``. Serves ``channel`` with
``aurora_dcc.hosts.blender.start`` (or, with ``--addon``, through the add-on in
hosts/blender: its ``register()`` starts the host, ``unregister()`` stops it),
plus ``test.*`` handlers that work on real ``bpy.data``. It pumps until the
host closes (``test.stop``, or stdin closing), then checks that nothing is
left behind and prints one JSON line with what it found; exit 0 when clean.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from bpy_module import bpy, remove_bpy_tmpdir  # noqa: E402

from aurora_dcc.hosts import blender as aurora_blender  # noqa: E402

channel = sys.argv[1]
use_addon = "--addon" in sys.argv[2:]
pump_thread = threading.get_ident()
handlers_before = len(bpy.app.handlers.depsgraph_update_post)

addon: Any = None
buttons_stopped = False
if use_addon:
    # The first host (started by register(), then stopped by the Stop button) serves
    # another channel: the test connects to the one the Start button opens.
    os.environ["AURORA_DCC_BLENDER_CHANNEL"] = f"{channel}_first"
    spec = importlib.util.spec_from_file_location(
        "aurora_dcc_blender",
        REPO / "hosts" / "blender" / "__init__.py",
        submodule_search_locations=[str(REPO / "hosts" / "blender")],
    )
    assert spec is not None and spec.loader is not None
    addon = importlib.util.module_from_spec(spec)
    sys.modules["aurora_dcc_blender"] = addon
    spec.loader.exec_module(addon)
    addon.register()
    first = aurora_blender.current_host()
    assert first is not None, "the add-on's register() started no host"
    # The panel's Stop and Start buttons, as a user would press them.
    bpy.ops.aurora_dcc.host_stop()
    buttons_stopped = aurora_blender.current_host() is None and first.closed
    buttons_stopped = buttons_stopped and not os.path.exists(first.server.address)
    buttons_stopped = buttons_stopped and not first.waker.timer_registered
    os.environ["AURORA_DCC_BLENDER_CHANNEL"] = channel
    bpy.ops.aurora_dcc.host_start()
    host = aurora_blender.current_host()
    assert host is not None and host is not first, "the Start button started no host"
else:
    host = aurora_blender.start(channel)


def thread() -> dict[str, bool]:
    return {
        "main": threading.current_thread() is threading.main_thread(),
        "pumping": threading.get_ident() == pump_thread,
    }


def create(name: str) -> str:
    obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    bpy.context.scene.collection.objects.link(obj)
    return str(obj.name)


def create_mesh(name: str, vertices: list[list[float]]) -> str:
    """A mesh object whose vertices are ``vertices`` (x, y, z each), no edges or faces."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], [])
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return str(obj.name)


def rename(old: str, new: str) -> str:
    obj = bpy.data.objects[old]
    obj.name = new
    return str(obj.name)


def select_in_blender(names: list[str]) -> bool:
    """Select through bpy, as a user or another script would: not through scene.select."""
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj.name in names)
    bpy.context.view_layer.update()  # module mode: the depsgraph updates only when asked
    return True


progress: dict[str, Any] = {"done": 0, "seen": [], "beating": False}


def slow(seconds: float) -> int:
    time.sleep(seconds)
    progress["done"] += 1
    return int(progress["done"])


def beat() -> None:
    """The host's own work between drains (Blender's events, in the application)."""
    progress["seen"].append(progress["done"])
    if progress["beating"]:
        host.call_later(0.0, beat)


def start_beat() -> bool:
    progress.update(done=0, seen=[], beating=True)
    host.call_later(0.0, beat)
    return True


def stop_beat() -> list[int]:
    progress["beating"] = False
    return sorted(set(progress["seen"]))


def stop() -> bool:
    """Stop after this reply: the add-on's unregister(), or stop_host()."""
    host.call_later(0.0, addon.unregister if addon is not None else aurora_blender.stop_host)
    return True


def stop_now() -> bool:
    """Stop inside this handler: the closing host still sends this reply, after its bye."""
    (addon.unregister if addon is not None else aurora_blender.stop_host)()
    return True


host.registry.update(
    {
        "test.stop_now": stop_now,
        "test.thread": thread,
        "test.create": create,
        "test.create_mesh": create_mesh,
        "test.rename": rename,
        "test.select_in_blender": select_in_blender,
        "test.panel": lambda: hasattr(bpy.types, "AURORA_PT_host"),
        "test.stop": stop,
        "test.slow": slow,
        "test.start_beat": start_beat,
        "test.stop_beat": stop_beat,
        "test.queued": lambda: host.main.metrics.snapshot().queue_length,
    }
)


def stop_when_stdin_closes() -> None:
    sys.stdin.read()
    if not host.closed:
        host.post(stop)


threading.Thread(target=stop_when_stdin_closes, daemon=True).start()

aurora_blender.pump(None)  # until the host closes
if addon is not None and aurora_blender.current_host() is not None:
    addon.unregister()

report = {
    "closed": host.closed,
    "buttons_stopped_cleanly": buttons_stopped if use_addon else None,
    "current_host": aurora_blender.current_host() is not None,
    "socket_left": os.path.exists(host.server.address),
    "timer_registered": host.waker.timer_registered,
    "depsgraph_handlers_left": len(bpy.app.handlers.depsgraph_update_post) - handlers_before,
    "panel_left": hasattr(bpy.types, "AURORA_PT_host"),
}
print(json.dumps(report), flush=True)
remove_bpy_tmpdir()
left = ("current_host", "socket_left", "timer_registered", "depsgraph_handlers_left", "panel_left")
clean = report["closed"] and not any(report[key] for key in left)
sys.exit(0 if clean else 1)
