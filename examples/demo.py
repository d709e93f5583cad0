"""``make demo``: the whole flow, headless, with no DCC installed.

A standalone Qt host (the embedded default host) serves a small scene on its
main thread. An external tool (a plain-Python child process) calls it and
hears its events; a packed backend joins it, is called, and calls back while
streaming progress; a worker thread hands work to the main thread through a
DccIpcChannel; then everything shuts down cleanly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from aurora_dcc.hosts.standalone import StandaloneHost
from aurora_dcc.process.plugin import PluginCancelled, ProcessPlugin
from aurora_dcc.protocol import codec as codec
from aurora_dcc.qt.compat import QtCore, on_qt_main_thread

HERE = os.path.dirname(os.path.abspath(__file__))


def say(text: str) -> None:
    print(text, flush=True)


def pump_until(done: Callable[[], bool], timeout: float) -> None:
    """Run the Qt event loop until ``done()`` or ``timeout`` (the host keeps serving)."""
    loop = QtCore.QEventLoop()
    check = QtCore.QTimer(interval=2)
    check.timeout.connect(lambda: done() and loop.quit())
    QtCore.QTimer.singleShot(int(timeout * 1000), loop.quit)
    check.start()
    if not done():
        loop.exec()
    check.stop()
    if not done():
        raise TimeoutError(f"demo step did not finish within {timeout}s")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    host = StandaloneHost(f"aurora_demo_{os.getpid()}", export_env=False)
    qt_version = QtCore.qVersion()
    say(f"host     {host.name}: standalone Qt host (Qt {qt_version}, codec {codec.BACKEND})")

    # 1. An external tool: a separate, Qt-free process calls into the host.
    tool = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "tool.py"), host.name],
        stdout=subprocess.PIPE,
        text=True,
    )
    pump_until(lambda: tool.poll() is not None, timeout=30)
    for line in (tool.stdout.read() if tool.stdout else "").splitlines():
        say(f"tool     {line.removeprefix('[tool] ')}")
    if tool.returncode != 0:
        say(f"tool exited with {tool.returncode}")
        return 1

    # 2. A packed backend joins the host: the host calls it, it calls back.
    backend = host.spawn_backend([sys.executable, os.path.join(HERE, "backend.py")])
    say(f"backend  pid {backend.pid} ready, offers {backend.handler_names}")
    progress: list[tuple[int, bool]] = []
    backend.on("bake.progress", lambda _e, d: progress.append((d["step"], on_qt_main_thread())))
    result = backend.request("mesh.bake", {"pattern": "*", "steps": 5}, timeout=30)
    pump_until(lambda: len(progress) == 5, timeout=10)
    on_main = all(flag for _, flag in progress)
    say(f"backend  mesh.bake -> baked {result['baked']} (it called scene.ls back on the host)")
    say(f"backend  {len(progress)} bake.progress events, all on the main thread: {on_main}")

    # 3. A worker thread hands a DCC call to the main thread.
    answer: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: answer.update(info=host.main.call_in_main_thread(host.scene_info))
    )
    worker.start()
    pump_until(lambda: not worker.is_alive(), timeout=10)
    say(f"worker   call_in_main_thread(scene.info) -> {answer['info']}")

    # 4. Subprocess plugins: one runs to the end, one is cancelled half-way.
    script = os.path.join(HERE, "plugin_cache.py")
    steps: list[bool] = []
    plugin = ProcessPlugin(
        script, ["--frames", "20"], on_progress=lambda _d: steps.append(on_qt_main_thread())
    )
    plugin.start()
    pump_until(plugin.done, timeout=30)
    result = plugin.result(timeout=5)
    say(f"plugin   {result} after {len(steps)} progress events (main thread: {all(steps)})")
    slow = ProcessPlugin(script, ["--frames", "1000", "--seconds-per-frame", "0.01"])
    seen: list[int] = []
    slow.on("progress", lambda _e, data: seen.append(data["done"]))
    slow.start()
    pump_until(lambda: len(seen) >= 3, timeout=30)
    slow.cancel()
    pump_until(slow.done, timeout=30)
    try:
        slow.result(timeout=5)
        cancelled = "not cancelled"
    except PluginCancelled as exc:
        cancelled = f"cancelled after {max(seen)} of 1000 frames (exit code {exc.returncode})"
    say(f"plugin   {cancelled}")

    # 5. Shut down: backend, clients, server; nothing left in flight.
    code = backend.stop()
    host.close()
    say(f"shutdown backend exit code {code}; host closed; {time.monotonic() - started:.1f}s in all")
    return 0 if on_main and all(steps) and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
