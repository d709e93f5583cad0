"""A Blender host in module mode (``import bpy``), checked for the traps of issue 14.

Usage: ``blender_traps.py <channel>``. Starts the host with
``aurora_dcc.hosts.blender.start`` on this (the main, pumping) thread, then
checks, pumping the host where a worker needs the main thread: that
``start()`` refuses other settings and returns the running host for the
same; that ``create_for_context()`` gives an in-process channel whose
requests run on the main thread, from the main thread itself and from a
worker, without a socket; ``call_in_main_thread`` with keyword arguments;
and that events a handler emits while it runs reach a socket client as they
are emitted. Prints one JSON line with what it found.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from bpy_module import bpy, remove_bpy_tmpdir  # noqa: E402, F401

from aurora_dcc import LocalSocketChannel, Peer, create_for_context  # noqa: E402
from aurora_dcc.hosts import blender as aurora_blender  # noqa: E402
from aurora_dcc.hosts.host_settings import HostSettingsError  # noqa: E402

channel_name = sys.argv[1]
main_ident = threading.get_ident()
report: dict[str, Any] = {}

host = aurora_blender.start(channel_name)
report["same_settings_same_host"] = (
    aurora_blender.start(channel_name) is host and aurora_blender.start() is host
)
try:
    aurora_blender.start(channel_name, token="another")
    report["other_token"] = "no error"
except HostSettingsError as exc:
    report["other_token"] = str(exc)


def on_main() -> bool:
    return threading.get_ident() == main_ident


def in_worker(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a worker thread while this (main) thread pumps the host."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except Exception as exc:
            result["value"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=target)
    worker.start()
    aurora_blender.pump(20.0, until=lambda: not worker.is_alive())
    worker.join(5.0)
    return result.get("value", "worker still running")


host.register("test.on_main", on_main)
channel = create_for_context()
report["context_channel"] = type(channel).__name__
peer = Peer(channel, timeout=10.0)
started = time.monotonic()
report["main_thread_request"] = peer.request("test.on_main")
report["main_thread_request_s"] = time.monotonic() - started
report["scene_ls"] = isinstance(peer.request("scene.ls", {"pattern": "*"}), list)
report["worker_request"] = in_worker(lambda: peer.request("test.on_main"))
report["kwargs"] = in_worker(
    lambda: host.call_in_main_thread(lambda a, b=0: [a, b, on_main()], 1, b=2, timeout=10.0)
)
report["socket_clients"] = host.client_count

emitted: list[float] = []
arrived: list[float] = []


def work_with_progress() -> str:
    for step in range(5):
        if step:
            time.sleep(0.2)
        emitted.append(time.monotonic())
        host.emit("work.progress", {"step": step})
    time.sleep(0.2)
    return "done"


host.register("work.progress", work_with_progress)


def client() -> Any:
    socket_channel = LocalSocketChannel.connect(channel_name, timeout=10.0)
    with Peer(socket_channel, timeout=10.0) as socket_peer:
        socket_peer.on("work.progress", lambda _event, _data: arrived.append(time.monotonic()))
        result = socket_peer.request("work.progress")
        answered = time.monotonic()
    socket_channel.close()
    return [result, answered]


result, answered = in_worker(client)
report["progress_result"] = result
report["progress_lags"] = [got - sent for got, sent in zip(arrived, emitted)]
report["progress_before_response"] = len(arrived) == 5 and all(t < answered for t in arrived)

aurora_blender.stop_host()
report["closed_channel_shut_down"] = channel.is_shutdown()
print(json.dumps(report), flush=True)
remove_bpy_tmpdir()
