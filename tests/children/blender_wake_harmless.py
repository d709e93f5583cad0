"""Run inside the Blender application: ordinary work while main-loop wakes rain down.

Started by tests/test_blender_wake.py as
``xvfb-run -a blender --factory-startup --python blender_wake_harmless.py -- RESULT``.

It installs the main-loop wake (``install_wake``), starts a thread that signals
Blender's main thread thousands of times a second (``pthread_kill`` with the
wake's signal, bypassing its coalescing, plus ``wake()`` itself), and then,
from a timer on the main thread, does what a user does:

* saves the scene as .blend (plain and compressed), opens each file again
  and compares it with what was saved (objects, vertices, a large custom
  property);
* writes a large file with Python and an image with Blender, reads both
  back and compares them;
* plays the animation (``screen.animation_play``) and runs a modal operator
  driven by a window timer, checking that frames and timer events come.

It writes ``RESULT`` (JSON: ``ok``, ``errors``, ``signals``, ``seconds``,
``steps``) and quits Blender (``wm.quit_blender``), or exits 1 when a step
failed.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import bpy  # noqa: E402 - after the path: runs only inside Blender

from aurora_dcc.hosts import blender_wake  # noqa: E402

RESULT = sys.argv[sys.argv.index("--") + 1]
WORK = os.path.dirname(os.path.abspath(RESULT))
MAIN = threading.get_ident()

state: dict[str, Any] = {"errors": [], "steps": [], "frames": 0, "modal_events": 0}


# -- the storm --------------------------------------------------------------------


class Storm:
    """A thread signalling the main thread as fast as it can (a few per millisecond)."""

    def __init__(self, signum: int, wake: Any) -> None:
        self.signum = signum
        self.wake = wake
        self.sent = 0
        self.running = True
        self.started = time.monotonic()
        self.stopped = self.started
        self.thread = threading.Thread(target=self.run, name="wake-storm", daemon=True)
        self.thread.start()

    def run(self) -> None:
        kill, signum = signal.pthread_kill, self.signum
        while self.running:
            kill(MAIN, signum)
            kill(MAIN, signum)
            self.wake()
            self.sent += 2
            time.sleep(0.0002)

    def stop(self) -> None:
        self.running = False
        self.thread.join(5.0)
        self.stopped = time.monotonic()


# -- what a user does -------------------------------------------------------------


def fingerprint() -> dict[str, Any]:
    """What must survive a save and a load."""
    objects = {}
    for obj in bpy.data.objects:
        entry: dict[str, Any] = {"type": obj.type, "location": [round(v, 5) for v in obj.location]}
        if obj.type == "MESH":
            mesh = obj.data
            coords = array.array("f", [0.0]) * (3 * len(mesh.vertices))
            mesh.vertices.foreach_get("co", coords)
            entry["vertices"] = len(mesh.vertices)
            entry["coords"] = hashlib.sha256(coords.tobytes()).hexdigest()
        entry["payload"] = hashlib.sha256(str(obj.get("payload", "")).encode()).hexdigest()
        objects[obj.name] = entry
    return objects


def build_scene() -> None:
    """Enough data that saving and loading take a while (signals land mid-I/O)."""
    for index in range(6):
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=6, location=(3.0 * index, 0.0, 0.0))
        obj = bpy.context.active_object
        obj.name = f"sphere_{index}"
        obj["payload"] = "".join(f"{index}:{n};" for n in range(40_000))
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 100_000


def save_and_load(path: str, compress: bool) -> None:
    expected = fingerprint()
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=compress, check_existing=False)
    bpy.ops.wm.open_mainfile(filepath=path)
    found = fingerprint()
    if found != expected:
        missing = sorted(set(expected) ^ set(found))
        changed = sorted(k for k in expected if k in found and expected[k] != found[k])
        raise AssertionError(f"{path}: reloaded scene differs: {missing or changed}")


def write_and_read_bytes(path: str) -> None:
    data = os.urandom(1 << 20) * 24  # 24 MiB
    with open(path, "wb") as f:
        for start in range(0, len(data), 1 << 16):
            f.write(data[start : start + (1 << 16)])
    with open(path, "rb") as f:
        back = f.read()
    if hashlib.sha256(back).digest() != hashlib.sha256(data).digest():
        raise AssertionError(f"{path}: read back differs from what was written")


def write_and_read_image(path: str) -> None:
    size = 512
    image = bpy.data.images.new("storm", size, size, alpha=True)
    pixels = array.array("f", [((n * 37) % 256) / 255.0 for n in range(size * size * 4)])
    image.pixels.foreach_set(pixels)
    image.filepath_raw = path
    image.file_format = "PNG"
    image.save()
    loaded = bpy.data.images.load(path, check_existing=False)
    back = array.array("f", [0.0]) * (size * size * 4)
    loaded.pixels.foreach_get(back)
    worst = max(abs(a - b) for a, b in zip(pixels, back))
    if worst > 1.0 / 255.0:
        raise AssertionError(f"{path}: image read back differs by {worst}")


def window_area(kind: str) -> tuple[Any, Any]:
    window = bpy.context.window_manager.windows[0]
    for area in window.screen.areas:
        if area.type == kind:
            return window, area
    return window, window.screen.areas[0]


def count_frame(scene: Any, *args: Any) -> None:
    state["frames"] += 1


class CountTimerEvents(bpy.types.Operator):
    """A modal operator fed by a window timer: finishes after 40 timer events."""

    bl_idname = "wm.aurora_storm_modal"
    bl_label = "Aurora storm modal"

    _timer = None  # no annotation: Blender evaluates an operator's annotations as properties

    def invoke(self, context: Any, event: Any) -> set[str]:
        self._timer = context.window_manager.event_timer_add(0.01, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: Any, event: Any) -> set[str]:
        if event.type == "TIMER":
            state["modal_events"] += 1
            if state["modal_events"] >= 40:
                context.window_manager.event_timer_remove(self._timer)
                return {"FINISHED"}
        return {"PASS_THROUGH"}


def wait_for(condition: Any, timeout: float) -> Iterator[float]:
    """Yield timer intervals until ``condition()`` or ``timeout``; raise on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition.__doc__}")
        yield 0.05


def steps() -> Iterator[float]:
    """The work, one step per timer call; yields the delay before the next call."""
    interrupt = blender_wake.install_wake()
    if interrupt is None:
        raise AssertionError("install_wake() returned None: no wake to test")
    wake = blender_wake.current_wake()
    signum = wake.signum if wake is not None else None
    if signum is None:
        raise AssertionError("install_wake() gave a function but no wake is installed")
    storm = Storm(signum, interrupt)
    state["storm"] = storm
    yield 0.2
    build_scene()
    state["steps"].append("scene built")
    yield 0.0
    for round_ in range(3):
        for compress in (False, True):
            save_and_load(os.path.join(WORK, f"scene_{round_}_{int(compress)}.blend"), compress)
            yield 0.0
    state["steps"].append("6 saves and loads")
    write_and_read_bytes(os.path.join(WORK, "bytes.bin"))
    write_and_read_image(os.path.join(WORK, "image.png"))
    state["steps"].append("files and image")
    yield 0.0
    bpy.app.handlers.frame_change_post.append(count_frame)
    window, area = window_area("VIEW_3D")
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.screen.animation_play()

    def frames_played() -> bool:
        """20 frames of playback"""
        return bool(state["frames"] >= 20)

    yield from wait_for(frames_played, 30.0)
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.screen.animation_cancel(restore_frame=False)
    bpy.app.handlers.frame_change_post.remove(count_frame)
    state["steps"].append(f"played {state['frames']} frames")
    bpy.utils.register_class(CountTimerEvents)
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.wm.aurora_storm_modal("INVOKE_DEFAULT")

    def modal_done() -> bool:
        """40 timer events in the modal operator"""
        return bool(state["modal_events"] >= 40)

    yield from wait_for(modal_done, 30.0)
    state["steps"].append("modal operator finished")
    storm.stop()
    blender_wake.uninstall_wake()
    if signal.getsignal(signum) != signal.SIG_DFL:
        raise AssertionError(f"signal {signum}: handler not restored: {signal.getsignal(signum)}")
    state["steps"].append("wake uninstalled, handler restored")


def finish(ok: bool) -> None:
    storm: Optional[Storm] = state.get("storm")
    if storm is not None and storm.running:
        storm.stop()
    seconds = storm.stopped - storm.started if storm is not None else 0.0
    result = {
        "ok": ok,
        "errors": state["errors"],
        "steps": state["steps"],
        "signals": storm.sent if storm is not None else 0,
        "seconds": seconds,
    }
    with open(RESULT + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(RESULT + ".tmp", RESULT)
    if ok:
        bpy.ops.wm.quit_blender()
    else:
        sys.stderr.flush()
        os._exit(1)


work = steps()


def tick() -> Optional[float]:
    try:
        return next(work)
    except StopIteration:
        finish(True)
    except Exception:
        state["errors"].append(traceback.format_exc())
        finish(False)
    return None


bpy.app.timers.register(tick, first_interval=0.5, persistent=True)
