"""Run inside the Blender application: enable the aurora_dcc add-on, add test handlers.

Started by tests/test_blender_app.py as
``xvfb-run -a blender --factory-startup --python-exit-code 3 --python blender_app.py``
with ``BLENDER_USER_SCRIPTS`` pointing at a folder whose ``addons/`` holds the
add-on (a link to hosts/blender, or the zip installed here), and:

- ``AURORA_DCC_BLENDER_CHANNEL``: the channel the add-on's host serves;
- ``AURORA_TEST_REPO``: the repository to put on ``sys.path`` (unset: the
  add-on must find aurora_dcc itself, from its zip's wheel);
- ``AURORA_TEST_ADDON_ZIP``: a zip to install first, as a user would;
- ``AURORA_TEST_NO_ADDON``: start the host from this script instead (no add-on).

The script only enables the add-on as Blender's preferences would and adds
``test.*`` handlers to the host it started; Blender's own main loop then
serves clients (the script returns at once). Any error exits with code 3.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import addon_utils
import bpy

ADDON = "aurora_dcc_blender"

repo = os.environ.get("AURORA_TEST_REPO")
if repo:
    sys.path.insert(0, repo)

addon_zip = os.environ.get("AURORA_TEST_ADDON_ZIP")
if addon_zip:
    bpy.ops.preferences.addon_install(filepath=addon_zip)

if os.environ.get("AURORA_TEST_NO_ADDON"):  # a script's host: closed at exit (atexit)
    from aurora_dcc.hosts import blender as aurora_blender

    aurora_blender.start(os.environ["AURORA_DCC_BLENDER_CHANNEL"])
else:
    addon = addon_utils.enable(ADDON, default_set=True, handle_error=None)
    if addon is None:
        raise SystemExit(f"the {ADDON} add-on was not enabled")

from aurora_dcc.hosts.blender import current_host  # noqa: E402 - after the add-on set the path

host = current_host()
if host is None:
    raise SystemExit("no host started")


def main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def boom() -> None:
    raise ValueError("boom inside Blender")


def sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def select_later(names: list[str], delay: float = 0.2) -> bool:
    """Select ``names`` from a Blender timer, as a user's click would: not through the host."""

    def select() -> None:
        view_layer = bpy.context.view_layer
        for obj in view_layer.objects:
            obj.select_set(obj.name in names)
        return None

    bpy.app.timers.register(select, first_interval=delay)
    return True


depsgraph_updates = [0]


def count_update(*_args: Any) -> None:
    depsgraph_updates[0] += 1


bpy.app.handlers.depsgraph_update_post.append(count_update)


def drag(steps: int = 30, interval: float = 0.01) -> bool:
    """Move the active object a little on each of ``steps`` timer ticks, as a mouse drag does."""
    left = [steps]

    def step() -> Any:
        obj = bpy.context.view_layer.objects.active
        obj.location.x += 0.01
        left[0] -= 1
        return interval if left[0] > 0 else None

    bpy.app.timers.register(step, first_interval=0.0)
    return True


def state() -> dict[str, Any]:
    return {
        "clients": host.client_count,
        "depsgraph_updates": depsgraph_updates[0],
        "panel": hasattr(bpy.types, "AURORA_PT_host"),
        "wake": host.waker.interrupt is not None,
        "python": list(sys.version_info[:3]),
        "modules": {name: name in sys.modules for name in ("qtpy", "orjson", "PySide6")},
        "aurora_dcc": sys.modules["aurora_dcc"].__file__,
    }


def quit_soon() -> bool:
    """Quit Blender as File > Quit does, once this reply is sent."""

    def quit_blender() -> None:
        bpy.context.preferences.view.use_save_prompt = False
        window = bpy.context.window_manager.windows[0]
        with bpy.context.temp_override(window=window):
            bpy.ops.wm.quit_blender()
        return None

    bpy.app.timers.register(quit_blender, first_interval=0.1)
    return True


host.registry.update(
    {
        "test.main_thread": main_thread,
        "test.boom": boom,
        "test.sleep": sleep,
        "test.select_later": select_later,
        "test.state": state,
        "test.drag": drag,
        "test.quit": quit_soon,
    }
)
